"""The recruiters' and the health pages in a real browser (Debian's chromium driven by Playwright)
against the real service (`bentoml serve` on loopback with the smoke store and its sentiment and
health champions): key, prospects, fit table, heat map; partners at risk with reasons, trend plots
of a chosen partner, cohort time to competency; API errors shown in words. No network but
loopback: every other request is aborted."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect, sync_playwright

from features.schema import PRODUCTS, REGIONS
from models.health import HISTORY_MONTHS
from models.registry import Paths
from partnermatch.bench.route import RunningServer, running_service
from serving.health import AT_RISK_LIMIT
from serving.stores import sqlite_url
from serving.web.pages import HEALTH_PAGE, RECRUITERS_PAGE, WEB_PREFIX
from tests.serving.test_health_integration import STARTUP_LIMIT_SECONDS  # it loads the health models too

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by `make test`
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK = frozenset({"127.0.0.1", "localhost"})
WAIT_MS = 30_000  # scoring on a loaded 2-core machine
BOLT_PROFILE = '"Cloud migration and data backup for retailers, with managed storage"'
TWO_PROSPECTS = (
    "prospect_id,profile_text,products,certifications,regions,capacity\n"
    'acme,"Acme Networks deploys next-generation firewall and SD-WAN for mid-market firms",'
    "firewall|sd-wan,firewall:2,dach|nordics,6\n"
    f"bolt,{BOLT_PROFILE},cloud-migration|data-backup|storage,,na-east,3\n"
)
EMPTY_SECOND_PROFILE = TWO_PROSPECTS.replace(BOLT_PROFILE, "")


@pytest.fixture(scope="module")
def server(smoke_health_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("web-service")
    with running_service(
        Paths.from_environment(),
        sqlite_url(directory / "decisions.sqlite"),
        directory / "server.log",
        STARTUP_LIMIT_SECONDS,
    ) as running:
        yield running


def _loopback_only(route: Route) -> None:
    if urlsplit(route.request.url).hostname in LOOPBACK:
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    """Debian's chromium, headless, with a fresh profile; requests leave only for loopback."""
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context.route("**/*", _loopback_only)
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


def _open_with_key(browser: BrowserContext, server: RunningServer, key: str, page_path: str = RECRUITERS_PAGE) -> Page:
    page = browser.new_page()
    page.goto(f"{server.url}{WEB_PREFIX}{page_path}")
    page.fill("#api-key", key)
    page.click("#key-form button")
    return page


@pytest.mark.integration
def test_the_page_is_public_and_a_wrong_key_is_explained(browser: BrowserContext, server: RunningServer) -> None:
    assert httpx.get(f"{server.url}{WEB_PREFIX}{RECRUITERS_PAGE}").status_code == 200
    assert httpx.get(f"{server.url}{WEB_PREFIX}/static/recruiters.js").status_code == 200
    page = _open_with_key(browser, server, "pm_0000000000000000_not-a-real-key")
    expect(page.locator("#message")).to_contain_text("The API key was refused")


@pytest.mark.integration
def test_recruiters_score_prospects_and_see_the_white_space(
    browser: BrowserContext, server: RunningServer, tmp_path: Path
) -> None:
    page = _open_with_key(browser, server, server.api_key)
    expect(page.locator("#heat-map tbody tr")).to_have_count(len(PRODUCTS))  # drawn once the key is set

    page.fill("#prospects-text", TWO_PROSPECTS)
    page.click("#score-button")
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").first).to_have_text("acme")
    expect(rows.nth(1).locator("td").first).to_have_text("bolt")
    fits = [float(text) for text in page.locator("#results td.fit").all_inner_texts()]
    assert len(fits) == 2 and all(0.0 <= fit <= 100.0 for fit in fits)
    for row in range(2):
        expect(rows.nth(row).locator("td.evidence li").first).to_contain_text("similarity")
        reasons = rows.nth(row).locator("td.raises li, td.lowers li")
        assert reasons.count() >= 1
    expect(page.locator("#results-model")).to_contain_text("partnermatch-ipp v1")

    heat_map = page.locator("#heat-map")
    expect(heat_map.locator("thead th")).to_have_count(len(REGIONS) + 1)
    assert heat_map.locator("td.unmet").count() >= 1
    expect(page.locator("#white-space-model")).to_contain_text("Your prospect list: 2 prospects")
    assert page.locator("#message").is_hidden()
    screenshot = tmp_path / "recruiters.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    page.fill("#prospects-text", EMPTY_SECOND_PROFILE)
    page.click("#score-button")
    expect(page.locator("#message")).to_contain_text('Prospect 2 (id "bolt"): profile_text: missing or empty')
    page.screenshot(path=str(tmp_path / "recruiters-error.png"), full_page=True)


@pytest.mark.integration
def test_channel_managers_see_partners_at_risk_trends_and_cohorts(
    browser: BrowserContext, server: RunningServer, tmp_path: Path
) -> None:
    assert httpx.get(f"{server.url}{WEB_PREFIX}{HEALTH_PAGE}").status_code == 200
    page = _open_with_key(browser, server, server.api_key, HEALTH_PAGE)
    rows = page.locator("#at-risk tbody tr")
    expect(rows).to_have_count(AT_RISK_LIMIT)
    risks = [float(text.rstrip("%")) for text in page.locator("#at-risk td.probability").all_inner_texts()]
    assert risks == sorted(risks, reverse=True) and all(0.0 <= risk <= 100.0 for risk in risks)
    expect(rows.nth(0).locator("td.reasons li")).to_have_count(3)  # the API's top three reasons
    expect(page.locator("#at-risk-model")).to_contain_text("partnermatch-health v1")
    expect(page.locator("#cohorts tbody tr").first).to_be_visible()
    assert page.locator("#cohorts tbody tr").count() >= 2

    # The first partner's plots are drawn on load; choose the third and draw again.
    expect(page.locator("#engagement-plot circle.point")).to_have_count(HISTORY_MONTHS)
    chosen = page.locator("#at-risk td.partner").nth(2).inner_text()
    page.select_option("#partner-select", chosen)
    page.click("#trends-form button")
    expect(page.locator("#engagement-plot")).to_have_attribute("data-partner", chosen)
    expect(page.locator("#engagement-plot circle.point")).to_have_count(HISTORY_MONTHS)
    assert page.locator("#sentiment-plot circle.point").count() >= 1
    assert page.locator("#message").is_hidden()
    screenshot = tmp_path / "health.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


@pytest.mark.integration
def test_the_health_page_explains_a_refused_key(browser: BrowserContext, server: RunningServer) -> None:
    page = _open_with_key(browser, server, "pm_0000000000000000_not-a-real-key", HEALTH_PAGE)
    expect(page.locator("#message")).to_contain_text("The API key was refused")
