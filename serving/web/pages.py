"""The web pages: the recruiters' page `GET /app/recruiters`, the channel managers' health page
`GET /app/health` (server-rendered HTML), and their files under `/app/static/`.

The page and its files are public; the page asks for an API key (kept in the tab's sessionStorage)
and calls `POST /ipp_fit` and `GET /white_space` with `Authorization: Bearer <key>`, so its data
needs the `ipp` scope like any other client. The HTML is `templates/recruiters.html` with the
vocabularies and the batch limit filled in (`string.Template`); the script is `static/recruiters.js`.
The health page works the same way with the `health` scope: `GET /partners/at_risk`,
`/partners/cohorts` and `/partners/{id}/trends` (`templates/health.html`, `static/health.js`).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from string import Template

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from features.schema import PRODUCTS, REGIONS
from serving.ipp_schemas import MAX_PROSPECTS_PER_REQUEST

WEB_PREFIX = "/app"  # where `web_app` is mounted; public (serving.service.ACCESS)
RECRUITERS_PAGE = "/recruiters"
HEALTH_PAGE = "/health"
STATIC_PATH = "/static"
_HERE = Path(__file__).parent
EXAMPLE_CSV = (
    "prospect_id,profile_text,products,certifications,regions,capacity\n"
    'acme,"Acme Networks deploys next-generation firewall and SD-WAN for mid-market firms",'
    "firewall|sd-wan,firewall:2,dach|nordics,6\n"
)


@cache
def recruiters_html() -> str:
    """The page, rendered once: the template with the page settings as JSON the script reads."""
    settings = {"maxProspects": MAX_PROSPECTS_PER_REQUEST, "products": PRODUCTS, "regions": REGIONS}
    # `<` escaped so that no value can close the <script> element it sits in.
    settings_json = json.dumps(settings).replace("<", "\\u003c")
    template = Template((_HERE / "templates" / "recruiters.html").read_text())
    return template.substitute(
        settings_json=settings_json,
        max_prospects=MAX_PROSPECTS_PER_REQUEST,
        example_csv=EXAMPLE_CSV.replace("&", "&amp;").replace("<", "&lt;"),
        static=f"{WEB_PREFIX}{STATIC_PATH}",
    )


@cache
def health_html() -> str:
    """The health page, rendered once."""
    return Template((_HERE / "templates" / "health.html").read_text()).substitute(static=f"{WEB_PREFIX}{STATIC_PATH}")


web_app = FastAPI(title="web pages", docs_url=None, redoc_url=None, openapi_url=None)
web_app.mount(STATIC_PATH, StaticFiles(directory=_HERE / "static"), name="static")


@web_app.get(RECRUITERS_PAGE, response_class=HTMLResponse, include_in_schema=False)
def recruiters() -> HTMLResponse:
    return HTMLResponse(recruiters_html())


@web_app.get(HEALTH_PAGE, response_class=HTMLResponse, include_in_schema=False)
def health() -> HTMLResponse:
    return HTMLResponse(health_html())
