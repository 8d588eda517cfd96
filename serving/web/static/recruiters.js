// The recruiters' page: reads prospects (CSV or JSON), calls POST /ipp_fit and GET /white_space with
// the API key from sessionStorage, and draws the fit table and the white-space heat map.
// Everything the API sends is written with textContent, never as HTML.
"use strict";

const KEY_ITEM = "partnermatch-api-key";
const SETTINGS = JSON.parse(document.getElementById("page-settings").textContent);
const LIST_SEPARATOR = "|";
const LEVEL_SEPARATOR = ":";

const $ = (id) => document.getElementById(id);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind === "error" ? "" : "info";
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
}

// --- reading prospects ------------------------------------------------------------------------

// RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks.
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i];
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (char === '"') {
        quoted = false;
      } else {
        field += char;
      }
    } else if (char === '"') {
      quoted = true;
    } else if (char === ",") {
      row.push(field);
      field = "";
    } else if (char === "\n" || char === "\r") {
      if (char === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else {
      field += char;
    }
  }
  if (field !== "" || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((cells) => cells.some((cell) => cell.trim() !== ""));
}

function splitList(cell) {
  return String(cell || "")
    .split(LIST_SEPARATOR)
    .map((part) => part.trim())
    .filter((part) => part !== "");
}

// A number when the text is one, else the text itself: the API then names the field it refuses.
function numberOrText(text) {
  const trimmed = String(text).trim();
  return trimmed !== "" && Number.isFinite(Number(trimmed)) ? Number(trimmed) : trimmed;
}

function certificationsFromCell(cell) {
  const levels = {};
  for (const entry of splitList(cell)) {
    const [product, level] = entry.split(LEVEL_SEPARATOR);
    levels[product.trim()] = numberOrText(level === undefined ? "" : level);
  }
  return levels;
}

function prospectFromCsvRow(header, cells) {
  const value = (name) => {
    const column = header.indexOf(name);
    return column < 0 ? "" : (cells[column] || "").trim();
  };
  const prospect = {
    profile_text: value("profile_text"),
    products: splitList(value("products")),
    certifications: certificationsFromCell(value("certifications")),
    regions: splitList(value("regions")),
    capacity: numberOrText(value("capacity")),
  };
  if (value("prospect_id") !== "") prospect.prospect_id = value("prospect_id");
  return prospect;
}

// JSON prospects may carry lists or `|`-joined text, like the command line's files.
function prospectFromJson(item) {
  const asList = (value) => (Array.isArray(value) ? value : splitList(value));
  const prospect = { ...item };
  prospect.products = asList(item.products);
  prospect.regions = asList(item.regions);
  if (typeof item.certifications === "string") prospect.certifications = certificationsFromCell(item.certifications);
  if (typeof item.capacity === "string") prospect.capacity = numberOrText(item.capacity);
  return prospect;
}

// Prospects from the text; throws an Error whose message tells the user what is wrong.
function readProspects(text) {
  const trimmed = text.trim();
  if (trimmed === "") throw new Error("Paste prospects (CSV or JSON) or choose a file first.");
  let prospects;
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    let parsed;
    try {
      parsed = JSON.parse(trimmed);
    } catch (error) {
      throw new Error(`The JSON could not be read: ${error.message}`);
    }
    const items = Array.isArray(parsed) ? parsed : [parsed];
    if (!items.every((item) => item && typeof item === "object" && !Array.isArray(item))) {
      throw new Error("The JSON must be a list of prospect objects.");
    }
    prospects = items.map(prospectFromJson);
  } else {
    const rows = parseCsv(trimmed);
    const header = rows[0].map((name) => name.trim());
    if (!header.includes("profile_text")) {
      throw new Error("The CSV needs a header row naming its columns, profile_text among them.");
    }
    prospects = rows.slice(1).map((cells) => prospectFromCsvRow(header, cells));
  }
  if (prospects.length === 0) throw new Error("No prospects found below the header row.");
  if (prospects.length > SETTINGS.maxProspects) {
    throw new Error(`${prospects.length} prospects: at most ${SETTINGS.maxProspects} at a time; split the list.`);
  }
  return prospects;
}

// --- calling the API --------------------------------------------------------------------------

// `prospects.1.profile_text: ...` -> `Prospect 2 (id "b"): profile_text: ...`.
function describeField(error, prospects) {
  const match = /^prospects\.(\d+)\.?(.*)$/.exec(error.field || "");
  if (!match || !prospects) return error.error;
  const index = Number(match[1]);
  const id = prospects[index] && prospects[index].prospect_id;
  const who = `Prospect ${index + 1}${id ? ` (id "${id}")` : ""}`;
  return `${who}: ${match[2] || "prospect"}: ${error.reason}`;
}

async function apiError(response, prospects) {
  let body = null;
  try {
    body = await response.json();
  } catch (ignored) {
    body = null;
  }
  const detail = body && body.error ? body : null;
  switch (response.status) {
    case 401:
      return `The API key was refused: ${detail ? detail.reason : "unknown or revoked"}. Enter a valid key above.`;
    case 403:
      return "This API key lacks the ipp scope; ask for a key with it.";
    case 413:
      return "The request is too large; send fewer prospects or shorter profiles.";
    case 422:
      return `The service refused the prospects. ${detail ? describeField(detail, prospects) : ""}`;
    case 429:
      return `Too many requests for this key; try again in ${response.headers.get("Retry-After") || "a few"} s.`;
    case 503:
      return `The service cannot answer yet: ${detail ? detail.reason : "try again shortly"}.`;
    default:
      return `The service answered ${response.status}: ${detail ? detail.error : response.statusText}.`;
  }
}

class ApiError extends Error {}

async function callApi(path, options, prospects) {
  const key = sessionStorage.getItem(KEY_ITEM);
  if (!key) throw new ApiError("Enter your API key first (step 1).");
  let response;
  try {
    response = await fetch(path, {
      ...options,
      headers: { ...(options.headers || {}), Authorization: `Bearer ${key}` },
    });
  } catch (error) {
    throw new ApiError(`The service could not be reached: ${error.message}`);
  }
  if (!response.ok) throw new ApiError(await apiError(response, prospects));
  return response.json();
}

// --- drawing ----------------------------------------------------------------------------------

function list(items) {
  const ul = element("ul");
  for (const text of items) ul.appendChild(element("li", text));
  return ul;
}

const format = (value, digits = 1) => (value === null || value === undefined ? "n/a" : value.toFixed(digits));

function drawResults(answer) {
  const body = $("results").querySelector("tbody");
  body.replaceChildren();
  for (const fit of answer.prospects) {
    const row = element("tr");
    row.dataset.prospectId = fit.prospect_id;
    row.appendChild(element("td", fit.prospect_id));
    row.appendChild(element("td", format(fit.fit_score), "fit"));
    row.appendChild(element("td", fit.percentile === null ? "n/a" : `${format(fit.percentile, 0)}th`));
    const days = fit.expected_days_to_first_win;
    row.appendChild(element("td", days === null ? `> ${format(fit.first_win_observed_days, 0)} days` : `${format(days, 0)} days`));
    const evidence = element("td", null, "evidence");
    evidence.appendChild(
      list(fit.nearest_top_performers.map((item) =>
        `${item.partner_id}: similarity ${format(item.similarity, 2)}, wins ${format(100 * item.win_rate, 0)}%`)),
    );
    row.appendChild(evidence);
    for (const [reasons, className] of [[fit.raises, "raises"], [fit.lowers, "lowers"]]) {
      const cell = element("td", null, className);
      cell.appendChild(list(reasons.map((reason) =>
        `${reason.text} (${reason.contribution > 0 ? "+" : ""}${format(reason.contribution)})`)));
      row.appendChild(cell);
    }
    const cells = element("td", null, "white-space");
    cells.appendChild(list(fit.white_space.map((cell) => `${cell.product} in ${cell.region}`)));
    row.appendChild(cells);
    body.appendChild(row);
  }
  $("results-model").textContent = `Model ${answer.model.name} v${answer.model.version} (${answer.model.encoder}).`;
  $("results-section").hidden = false;
}

// White (no unmet demand) to deep red (the most unmet cell).
function heat(value, largest) {
  const share = largest > 0 ? Math.min(value / largest, 1) : 0;
  return `hsl(8, 78%, ${Math.round(96 - 52 * share)}%)`;
}

function drawWhiteSpace(answer) {
  const byCell = new Map(answer.cells.map((cell) => [`${cell.product}@${cell.region}`, cell]));
  const largest = Math.max(0, ...answer.cells.map((cell) => cell.excess_unmet_per_month));
  const head = element("tr");
  head.appendChild(element("th", "product \\ region"));
  for (const region of answer.regions) head.appendChild(element("th", region));
  $("heat-map").querySelector("thead").replaceChildren(head);
  const body = $("heat-map").querySelector("tbody");
  body.replaceChildren();
  for (const product of answer.products) {
    const row = element("tr");
    row.appendChild(element("th", product));
    for (const region of answer.regions) {
      const cell = byCell.get(`${product}@${region}`);
      if (!cell) {
        row.appendChild(element("td", "-", "empty"));
        continue;
      }
      const td = element("td", format(cell.excess_unmet_per_month), "unmet");
      td.style.background = heat(cell.excess_unmet_per_month, largest);
      td.style.color = cell.excess_unmet_per_month > 0.6 * largest ? "#fff" : "#1d2330";
      td.title =
        `${product} in ${region}: ${format(cell.excess_unmet_per_month)} unmet deals/month beyond well-served cells; ` +
        `recruit a level-${cell.recruit_certification_level} partner taking ${cell.recruit_capacity} deals/month`;
      row.appendChild(td);
    }
    body.appendChild(row);
  }
  const ranked = $("white-space-cells");
  ranked.replaceChildren();
  for (const cell of answer.cells.slice(0, 10)) {
    const item = element(
      "li",
      `${cell.product} in ${cell.region}: ${format(cell.excess_unmet_per_month)} unmet deals/month ` +
        `(${cell.serving_partners} partners serve it). Recruit: certified level ${cell.recruit_certification_level}, ` +
        `${cell.recruit_capacity} deals/month, typical deal $${Math.round(cell.typical_amount).toLocaleString()} ` +
        `(${cell.typical_segment}).`,
    );
    if (cell.prospects.length) {
      item.appendChild(list(cell.prospects.map((p) => `your prospect ${p.prospect_id}: fit ${format(p.fit_score)}`)));
    }
    ranked.appendChild(item);
  }
  const kept = answer.prospect_list;
  $("white-space-model").textContent =
    `Model ${answer.model.name} v${answer.model.version}. ` +
    (kept ? `Your prospect list: ${kept.prospects} prospects.` : "Score prospects to see which cells they fill.");
  $("white-space-section").hidden = false;
}

// --- wiring -----------------------------------------------------------------------------------

async function refreshWhiteSpace() {
  drawWhiteSpace(await callApi("/white_space", { method: "GET" }));
}

async function scoreProspects(event) {
  event.preventDefault();
  clearMessage();
  let prospects;
  try {
    prospects = readProspects($("prospects-text").value);
  } catch (error) {
    showMessage(error.message);
    return;
  }
  const button = $("score-button");
  button.disabled = true;
  showMessage(`Scoring ${prospects.length} prospect(s)...`, "info");
  try {
    const answer = await callApi(
      "/ipp_fit",
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prospects, keep: true }) },
      prospects,
    );
    drawResults(answer);
    await refreshWhiteSpace();
    clearMessage();
  } catch (error) {
    showMessage(error instanceof ApiError ? error.message : `Unexpected problem: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

async function useKey(event) {
  event.preventDefault();
  clearMessage();
  const key = $("api-key").value.trim();
  if (!key) {
    showMessage("Enter an API key.");
    return;
  }
  sessionStorage.setItem(KEY_ITEM, key);
  $("api-key").value = "";
  $("key-state").textContent = "key set for this tab";
  try {
    await refreshWhiteSpace();
  } catch (error) {
    showMessage(error.message);
  }
}

async function readFile() {
  const [file] = $("prospects-file").files;
  if (file) $("prospects-text").value = await file.text();
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", useKey);
  $("prospects-form").addEventListener("submit", scoreProspects);
  $("prospects-file").addEventListener("change", readFile);
  if (sessionStorage.getItem(KEY_ITEM)) {
    $("key-state").textContent = "key set for this tab";
    refreshWhiteSpace().catch((error) => showMessage(error.message));
  }
});
