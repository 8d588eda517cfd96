// The channel managers' health page: GET /partners/at_risk, /partners/cohorts and
// /partners/{id}/trends with the API key from sessionStorage; draws the at-risk table, the cohort
// table and SVG line plots. Everything the API sends is written with textContent, never as HTML.
"use strict";

const KEY_ITEM = "partnermatch-api-key"; // shared with the recruiters' page: one key per tab
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = false;
}

async function errorText(response) {
  let detail = null;
  try {
    const body = await response.json();
    detail = body && body.reason ? body : null; // serving.errors.ErrorResponse
  } catch (_) {
    detail = null;
  }
  switch (response.status) {
    case 401:
      return `The API key was refused: ${detail ? detail.reason : "unknown or revoked"}. Enter a valid key above.`;
    case 403:
      return "This API key lacks the health scope; ask for a key with it.";
    case 404:
      return `Unknown partner: ${detail ? detail.reason : ""}`;
    case 429:
      return `Too many requests for this key; try again in ${response.headers.get("Retry-After") || "a few"} s.`;
    case 503:
      return `The health model is not available: ${detail ? detail.reason : "try again later"}.`;
    default:
      return `The service answered ${response.status}${detail ? `: ${detail.reason}` : ""}.`;
  }
}

async function getJson(path) {
  const key = sessionStorage.getItem(KEY_ITEM);
  if (!key) throw new Error("Enter your API key first (step 1).");
  let response;
  try {
    response = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  } catch (error) {
    throw new Error(`The service could not be reached (${error.message}).`);
  }
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

function drawAtRisk(answer) {
  $("at-risk-model").textContent = `As of ${answer.as_of}, ${answer.model.name} v${answer.model.version}`;
  const body = $("at-risk").querySelector("tbody");
  body.replaceChildren();
  const select = $("partner-select");
  select.replaceChildren();
  for (const partner of answer.partners) {
    const row = element("tr");
    row.append(element("td", partner.partner_id, "partner"));
    row.append(element("td", `${(100 * partner.disengagement_probability).toFixed(1)}%`, "probability"));
    row.append(element("td", partner.score.toFixed(0), "score"));
    row.append(element("td", partner.band.replace("_", " "), `band ${partner.band}`));
    const reasons = element("ul");
    // The top TreeSHAP reasons, marked by whether they raise or lower the risk.
    for (const reason of partner.reasons) {
      reasons.append(element("li", reason.text, reason.contribution > 0 ? "raises" : "lowers"));
    }
    const cell = element("td", undefined, "reasons");
    cell.append(reasons);
    row.append(cell);
    body.append(row);
    const option = element("option", partner.partner_id);
    option.value = partner.partner_id;
    select.append(option);
  }
}

function drawCohorts(answer) {
  const body = $("cohorts").querySelector("tbody");
  body.replaceChildren();
  for (const cohort of answer.cohorts) {
    const row = element("tr");
    row.append(element("td", cohort.cohort));
    row.append(element("td", cohort.partners));
    row.append(element("td", cohort.first_wins));
    row.append(element("td", cohort.median_days === null ? "not reached" : cohort.median_days.toFixed(0), "median"));
    body.append(row);
  }
}

// A line through the points that have a value (gaps where null), with the axis range labelled.
function drawLine(svg, labels, values, low, high) {
  svg.replaceChildren();
  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  const pad = 30;
  const x = (index) => pad + (index * (width - 2 * pad)) / Math.max(labels.length - 1, 1);
  const y = (value) => height - pad - ((value - low) * (height - 2 * pad)) / Math.max(high - low, 1e-9);
  const shape = (tag, attributes) => {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    svg.append(node);
    return node;
  };
  shape("line", { x1: pad, y1: y(low), x2: width - pad, y2: y(low), stroke: "#999" });
  shape("text", { x: 2, y: y(high) + 4, "font-size": 10 }).textContent = high.toFixed(1);
  shape("text", { x: 2, y: y(low) + 4, "font-size": 10 }).textContent = low.toFixed(1);
  shape("text", { x: pad, y: height - 8, "font-size": 10 }).textContent = labels[0] || "";
  shape("text", { x: width - pad - 60, y: height - 8, "font-size": 10 }).textContent = labels[labels.length - 1] || "";
  const points = values.map((value, index) => (value === null ? null : `${x(index)},${y(value)}`)).filter(Boolean);
  if (points.length) shape("polyline", { points: points.join(" "), fill: "none", stroke: "#2a6", "stroke-width": 2, class: "series" });
  values.forEach((value, index) => {
    if (value !== null) shape("circle", { cx: x(index), cy: y(value), r: 3, fill: "#2a6", class: "point" });
  });
}

async function showTrends(partnerId) {
  const answer = await getJson(`/partners/${encodeURIComponent(partnerId)}/trends`);
  const labels = answer.points.map((point) => point.as_of);
  const engagement = answer.points.map((point) => point.engagement_30d);
  drawLine($("engagement-plot"), labels, engagement, 0, Math.max(...engagement, 1));
  drawLine($("sentiment-plot"), labels, answer.points.map((point) => point.sentiment), -1, 1);
  $("engagement-plot").dataset.partner = answer.partner_id;
}

async function refresh() {
  $("message").hidden = true;
  drawAtRisk(await getJson("/partners/at_risk"));
  drawCohorts(await getJson("/partners/cohorts"));
  const first = $("partner-select").value;
  if (first) await showTrends(first);
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_ITEM, key);
  $("api-key").value = "";
  $("key-state").textContent = "key set for this tab";
  refresh().catch((error) => showMessage(error.message));
});

$("trends-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("message").hidden = true;
  showTrends($("partner-select").value).catch((error) => showMessage(error.message));
});

if (sessionStorage.getItem(KEY_ITEM)) {
  $("key-state").textContent = "key set for this tab";
  refresh().catch((error) => showMessage(error.message));
}
