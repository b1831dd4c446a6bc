// The Campaigns page: plain JavaScript over our own API. The query string holds the
// whole view (grouping, window, time zone, filters, sort, charted values, chart
// metric and interval, open drilldown), so any view can be bookmarked and shared.
"use strict";

const TOKEN_KEY = "kenbun.token";
const COLUMNS = [
  { key: "name", label: "Value", kind: "text" },
  { key: "total_events", label: "Events", kind: "count" },
  { key: "unique_leads", label: "Leads", kind: "count" },
  { key: "mql_count", label: "MQLs", kind: "count" },
  { key: "total_points", label: "Points", kind: "count" },
  { key: "deals_count", label: "Deals", kind: "count" },
  { key: "pipeline_value", label: "Pipeline*", kind: "money" },
  { key: "closed_won_value", label: "Closed-won*", kind: "money" },
  { key: "first_event_at", label: "First event", kind: "time" },
  { key: "last_event_at", label: "Last event", kind: "time" },
];
const LEAD_COLUMNS = [
  { key: "display_name", label: "Lead", kind: "text" },
  { key: "email", label: "Email", kind: "text" },
  { key: "first_name", label: "First name", kind: "text" },
  { key: "last_name", label: "Last name", kind: "text" },
  { key: "title", label: "Title", kind: "text" },
  { key: "company", label: "Company", kind: "text" },
  { key: "score", label: "Score", kind: "count" },
  { key: "level", label: "Level", kind: "text" },
  { key: "account_name", label: "Account", kind: "text" },
  { key: "deal_stage", label: "Deal stage", kind: "text" },
  { key: "deal_amount", label: "Deal amount", kind: "money" },
  { key: "first_touch_at", label: "First touch", kind: "time" },
  { key: "last_touch_at", label: "Last touch", kind: "time" },
  { key: "lead_id", label: "Lead id", kind: "text" },
  { key: "account_id", label: "Account id", kind: "text" },
];
const METRICS = COLUMNS.filter((c) => c.kind === "count" || c.kind === "money");
const NUMERIC_KEYS = new Set([...COLUMNS, ...LEAD_COLUMNS].filter((c) => c.kind !== "text" && c.kind !== "time").map((c) => c.key).concat("values"));
const FACETS = [
  { param: "utm_source", key: "source", label: "Source" },
  { param: "utm_medium", key: "medium", label: "Medium" },
  { param: "utm_campaign", key: "campaign", label: "Campaign" },
];
const INTERVALS = ["day", "week", "month"];
const CHARTED_BY_DEFAULT = 5;
const MAX_CHARTED = 20;
const FACET_CHIPS = 40;
const PAGE = 500;
const BROWSER_TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

const $ = (id) => document.getElementById(id);
const counts = new Intl.NumberFormat(undefined);
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const DECIMAL = counts.formatToParts(1.5).find((part) => part.type === "decimal").value;
let times = dateTimes(BROWSER_TZ);

let rows = [];
let totals = null;
let facets = {};
let series = null;
let leads = [];
let leadTotal = 0;
let snapshotAt = null;
let renders = 0;

// ------------------------------------------------------------------ state --

function knownZone(name) {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

function state() {
  const q = new URLSearchParams(location.search);
  const listed = (key, most) => [...new Set(q.getAll(key).filter(Boolean))].slice(0, most);
  const s = {
    group_by: ["campaign", "source", "medium"].includes(q.get("group_by")) ? q.get("group_by") : "campaign",
    window: q.get("window") || "30",
    start: q.get("start") || "",
    end: q.get("end") || "",
    tz: q.get("tz") && knownZone(q.get("tz")) ? q.get("tz") : BROWSER_TZ,
    sort: q.get("sort") || "total_events",
    dir: q.get("dir") === "asc" ? "asc" : "desc",
    q: q.get("q") || "",
    metric: METRICS.some((c) => c.key === q.get("metric")) ? q.get("metric") : "pipeline_value",
    interval: INTERVALS.includes(q.get("interval")) ? q.get("interval") : "",
    chart: listed("chart", MAX_CHARTED),
    value: q.get("value"),
    ou: q.get("ou") || "",
  };
  for (const facet of FACETS) s[facet.param] = listed(facet.param, 100);
  return s;
}

function setState(changes, { push = false } = {}) {
  const next = { ...state(), ...changes };
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(next)) {
    if (Array.isArray(value)) for (const item of value) q.append(key, item);
    else if (value !== null && value !== undefined && value !== "") q.set(key, value);
  }
  const url = `${location.pathname}?${q}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

// Today's date where the reader has chosen to be: "last 7 days" are that zone's days.
function today(tz) {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(new Date());
  const part = (type) => Number(parts.find((p) => p.type === type).value);
  return { year: part("year"), month: part("month") - 1, day: part("day") };
}

function windowDates(s) {
  const now = today(s.tz);
  const day = (offset) => isoDay(new Date(Date.UTC(now.year, now.month, now.day - offset)));
  if (s.window === "all") return {};
  if (s.window === "custom") return { start_date: s.start || undefined, end_date: s.end || undefined };
  if (s.window === "quarter") {
    return { start_date: isoDay(new Date(Date.UTC(now.year, now.month - (now.month % 3), 1))), end_date: day(0) };
  }
  const days = Number(s.window) || 30;
  return { start_date: day(days - 1), end_date: day(0) };
}

// A chosen interval wins; else one that keeps the chart readable for the window.
function interval(s) {
  if (s.interval) return s.interval;
  if (s.window === "7" || s.window === "30") return "day";
  if (s.window === "90" || s.window === "quarter") return "week";
  if (s.window === "custom" && s.start && s.end) {
    const days = (Date.parse(s.end) - Date.parse(s.start)) / 86400000;
    return days <= 92 ? "day" : days <= 730 ? "week" : "month";
  }
  return "month";
}

// -------------------------------------------------------------------- api --

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// Money arrives as a JSON number in its exact decimal text: keep that text rather
// than a float (a float may not hold it), and every integer count as a number.
function exactNumbers(key, value, context) {
  if (typeof value !== "number" || !context || typeof context.source !== "string") return value;
  return Number.isSafeInteger(value) && /^-?[0-9]+$/.test(context.source) ? value : context.source;
}

async function request(path, accept, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, {
    ...options,
    headers: { Accept: accept, Authorization: `Bearer ${token}`, ...(options.headers || {}) },
    credentials: "same-origin",
  });
  const text = response.status === 204 ? "" : await response.text();
  if (!response.ok) {
    let detail = null;
    try { detail = JSON.parse(text).detail; } catch { detail = null; }
    throw new ApiError(response.status, detail || response.statusText);
  }
  return { text, response };
}

async function api(path, options = {}) {
  const { text, response } = await request(path, "application/json", options);
  return { body: text ? JSON.parse(text, exactNumbers) : null, response };
}

function explain(error) {
  if (!(error instanceof ApiError)) return "The service cannot be reached. Check your connection and retry.";
  if (error.status === 401) return "Your token is invalid, expired or revoked. Sign in again with a valid token.";
  if (error.status === 403) return `No access: ${error.message}`;
  if (error.status === 503) return "The service is still loading this org unit's data. Retry in a few seconds.";
  if (error.status === 400 || error.status === 409 || error.status === 414) return error.message;
  return `Something went wrong (${error.status}). Retry later.`;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

// ------------------------------------------------------------- formatting --

function dateTimes(tz) {
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: tz });
}

// Two decimals always, from the exact text: never through a float, which could
// change the digits of a large amount.
function moneyText(value) {
  const text = String(value);
  const match = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(text);
  if (!match) return text;
  const [, sign, whole, fraction = ""] = match;
  const grouped = counts.format(BigInt(whole));
  return `${sign}${grouped}${DECIMAL}${fraction.padEnd(2, "0")}`;
}

function format(value, kind) {
  if (value === null || value === undefined) return "—";
  if (kind === "count") return counts.format(value);
  if (kind === "money") return moneyText(value);
  if (kind === "time") return times.format(new Date(value));
  return String(value);
}

function freshness() {
  if (!snapshotAt) return;
  const seconds = Math.max(0, Math.round((Date.now() - snapshotAt.getTime()) / 1000));
  const age = seconds < 90 ? `${seconds} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`;
  $("freshness").textContent = `data as of ${age} ago`;
  $("freshness").title = snapshotAt.toISOString();
}

// --------------------------------------------------------------- csv files --

// A spreadsheet reads a cell starting with one of these as a formula (CSV
// injection, OWASP): such a cell gets a leading ', which shows it as text. A
// number in a numeric column is left alone, so that -5 stays a number.
const FORMULA_START = /^[=+\-@\t\r]/;
const PLAIN_NUMBER = /^-?[0-9]+(\.[0-9]+)?$/;

// RFC 4180 cells, each with whether it was quoted: an empty quoted text is not a
// NULL, and a cell left as it was is written back byte for byte.
function parseCsv(text) {
  const table = [];
  let row = [];
  let i = 0;
  const plain = /[^,\r\n]*/y;
  for (;;) {
    if (text[i] === '"') {
      let cell = "";
      i += 1;
      for (;;) {
        const quote = text.indexOf('"', i);
        if (quote < 0) throw new Error("unterminated quoted CSV field");
        cell += text.slice(i, quote);
        if (text[quote + 1] === '"') {
          cell += '"';
          i = quote + 2;
        } else {
          i = quote + 1;
          break;
        }
      }
      row.push({ text: cell, quoted: true });
    } else {
      plain.lastIndex = i;
      const cell = plain.exec(text)[0];
      row.push({ text: cell, quoted: false });
      i += cell.length;
    }
    if (text[i] === ",") {
      i += 1;
      continue;
    }
    table.push(row);
    row = [];
    if (text.startsWith("\r\n", i)) i += 2;
    else if (text[i] === "\n") i += 1;
    if (i >= text.length) return table;
  }
}

function neutralised(text) {
  const [header, ...body] = parseCsv(text);
  const numeric = header.map((cell) => NUMERIC_KEYS.has(cell.text));
  const write = ({ text: cell, quoted }) => (quoted || /[",\r\n]/.test(cell) ? `"${cell.replace(/"/g, '""')}"` : cell);
  const lines = [header.map(write).join(",")];
  for (const row of body) {
    lines.push(row.map((cell, index) => {
      const formula = FORMULA_START.test(cell.text) && !(numeric[index] && PLAIN_NUMBER.test(cell.text));
      return write(formula ? { ...cell, text: `'${cell.text}` } : cell);
    }).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

function offer(name, text) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

async function download(button, name, fetchText) {
  button.disabled = true;
  try {
    offer(name, neutralised(await fetchText()));
  } catch (error) {
    showMessage(explain(error));
  } finally {
    button.disabled = false;
  }
}

async function csvOf(path) {
  return (await request(path, "text/csv")).text;
}

// The API gives the leads a page at a time: every page, headers after the first
// dropped. Pages of different snapshots would not add up to one list (a refresh
// can move a lead across a page boundary), so a download whose snapshot changes
// midway starts again, and gives up with a message rather than a mixed file.
async function leadsCsv(s) {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const { text, consistent } = await leadsCsvOnce(s);
    if (consistent) return text;
  }
  throw new ApiError(409, "The data changed during the download three times. Download again.");
}

async function leadsCsvOnce(s) {
  let text = null;
  let total = Infinity;
  let snapshot = null;
  for (let offset = 0; offset < total; offset += PAGE) {
    const params = query(s);
    params.set("format", "csv");
    params.set("offset", offset);
    params.set("limit", PAGE);
    const { text: page, response } = await request(leadsUrl(s.value, params), "text/csv");
    const at = response.headers.get("X-Snapshot-At");
    if (snapshot === null) snapshot = at;
    else if (at !== snapshot) return { text, consistent: false };
    text = text === null ? page : text + page.slice(page.indexOf("\r\n") + 2);
    total = Number(response.headers.get("X-Total-Count"));
    if (!Number.isFinite(total)) break;
  }
  return { text, consistent: true };
}

// ------------------------------------------------------------------ views --

function compare(key, dir) {
  const sign = dir === "asc" ? 1 : -1;
  const numeric = NUMERIC_KEYS.has(key);
  return (a, b) => {
    const x = a[key];
    const y = b[key];
    if (x === y) return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    if (x === null) return 1;
    if (y === null) return -1;
    if (numeric && Number(x) !== Number(y)) return (Number(x) - Number(y)) * sign;
    if (numeric) return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    return (x < y ? -1 : 1) * sign;
  };
}

function visibleRows(s) {
  const needle = s.q.trim().toLowerCase();
  return rows.filter((row) => !needle || row.name.toLowerCase().includes(needle)).sort(compare(s.sort, s.dir));
}

function charted(s) {
  if (s.chart.length) return s.chart;
  return [...rows].sort(compare(s.metric, "desc")).slice(0, CHARTED_BY_DEFAULT).map((row) => row.name);
}

function driftGroups() {
  const groups = new Map();
  for (const row of rows) {
    const key = row.name.trim().toLowerCase();
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(row.name);
  }
  return new Map([...groups].filter(([, names]) => names.length > 1));
}

function cell(tag, kind, text) {
  const element = document.createElement(tag);
  element.className = kind;
  element.textContent = text;
  return element;
}

function renderTable(s) {
  $("table-head").replaceChildren(...COLUMNS.map((column) => {
    const th = document.createElement("th");
    th.className = column.kind;
    th.setAttribute("aria-sort", s.sort === column.key ? (s.dir === "asc" ? "ascending" : "descending") : "none");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.dataset.key = column.key;
    button.textContent = column.label + (s.sort === column.key ? (s.dir === "asc" ? " ▲" : " ▼") : "");
    th.append(button);
    return th;
  }));
  const total = document.createElement("tr");
  if (totals) {
    for (const column of COLUMNS) {
      if (column.key === "name") {
        const th = cell("th", "text", `Total, de-duplicated (${counts.format(totals.values)} values)`);
        th.scope = "row";
        th.title = "Every lead and deal counted once, however many values it touched: not the sum of the rows below";
        total.append(th);
      } else {
        total.append(cell("td", column.kind, format(totals[column.key], column.kind)));
      }
    }
  }
  $("table-totals").replaceChildren(...(totals ? [total] : []));

  const drift = driftGroups();
  const drifted = new Set([...drift.values()].flat());
  const picked = new Set(charted(s));
  const full = picked.size >= MAX_CHARTED;
  const visible = visibleRows(s);
  $("table-body").replaceChildren(...visible.map((row) => {
    const tr = document.createElement("tr");
    for (const column of COLUMNS) {
      if (column.key !== "name") {
        tr.append(cell("td", column.kind, format(row[column.key], column.kind)));
        continue;
      }
      const td = document.createElement("td");
      td.className = "text";
      const pick = document.createElement("input");
      pick.type = "checkbox";
      pick.className = "chart-pick";
      pick.dataset.value = row.name;
      pick.checked = picked.has(row.name);
      pick.disabled = full && !pick.checked;
      pick.setAttribute("aria-label", `Chart ${row.name}`);
      pick.title = pick.disabled ? `At most ${MAX_CHARTED} values are charted` : "Chart this value";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "row-link";
      button.dataset.value = row.name;
      button.textContent = row.name;
      button.title = `Show the leads of ${JSON.stringify(row.name)}`;
      td.append(pick, button);
      if (drifted.has(row.name)) {
        const flag = document.createElement("span");
        flag.className = "flag";
        flag.textContent = "drift";
        flag.title = "Differs from another value only by case or surrounding spaces";
        td.append(flag);
      }
      tr.append(td);
    }
    return tr;
  }));
  $("count").textContent = `${counts.format(visible.length)} of ${counts.format(rows.length)} values`;
  const list = $("drift");
  list.replaceChildren(...[...drift.values()].map((names) => {
    const li = document.createElement("li");
    li.textContent = names.map((name) => JSON.stringify(name)).join(" · ");
    return li;
  }));
  if (!drift.size) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No casing or whitespace variants in this window.";
    list.append(li);
  }
}

function renderFacet(s, details) {
  const param = details.dataset.key;
  const facet = FACETS.find((f) => f.param === param);
  const chosen = new Set(s[param]);
  const needle = details.querySelector(".facet-find").value.trim().toLowerCase();
  const values = facets[param] || [];
  const matching = values.filter((row) => !needle || row.name.toLowerCase().includes(needle));
  const shown = [...matching.filter((row) => chosen.has(row.name)), ...matching.filter((row) => !chosen.has(row.name)).slice(0, FACET_CHIPS)];
  const chips = shown.map((row) => chip(facet, row.name, row.total_events, chosen.has(row.name)));
  if (matching.length > shown.length) {
    const more = document.createElement("span");
    more.className = "muted small";
    more.textContent = `${counts.format(matching.length - shown.length)} more: type to find them`;
    chips.push(more);
  }
  if (!values.length) chips.push(cell("span", "muted small", "None in this window."));
  details.querySelector(".chips").replaceChildren(...chips);
  details.querySelector("summary").textContent = `${facet.label}s${chosen.size ? ` · ${chosen.size} chosen` : ""}`;
}

function chip(facet, name, events, on, removable = false) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = on ? "chip on" : "chip";
  button.dataset.param = facet.param;
  button.dataset.value = name;
  button.setAttribute("aria-pressed", String(on));
  const label = document.createElement("span");
  label.className = "chip-name";
  label.textContent = removable ? `${facet.label}: ${name}` : name;
  const count = document.createElement("span");
  count.className = "chip-count";
  count.textContent = counts.format(events);
  count.title = "events";
  button.append(label, count);
  if (removable) {
    button.setAttribute("aria-label", `Remove the filter ${facet.label} ${JSON.stringify(name)}`);
    button.append(cell("span", "chip-remove", "×"));
  }
  return button;
}

function renderFilters(s) {
  for (const details of document.querySelectorAll("details.facet")) renderFacet(s, details);
  const active = [];
  for (const facet of FACETS) {
    for (const name of s[facet.param]) {
      const row = (facets[facet.param] || []).find((r) => r.name === name);
      active.push(chip(facet, name, row ? row.total_events : 0, true, true));
    }
  }
  $("active-filters").replaceChildren(...active);
  $("clear-filters").hidden = !active.length;
}

// ------------------------------------------------------------------ chart --

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2f5bd3", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d", "#4d7c0f", "#475569"];
const DASHES = ["", "6 4", "2 3", "10 3 2 3"];
const MARKERS = ["circle", "square", "triangle", "diamond", "ring"];
let chartView = null;

function svg(tag, attributes = {}) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

function seriesStyle(index) {
  return { color: COLORS[index % COLORS.length], dash: DASHES[index % DASHES.length], marker: MARKERS[index % MARKERS.length] };
}

function marker(style, x, y, size) {
  const r = size;
  let shape;
  if (style.marker === "circle" || style.marker === "ring") shape = svg("circle", { cx: x, cy: y, r });
  else if (style.marker === "square") shape = svg("rect", { x: x - r, y: y - r, width: 2 * r, height: 2 * r });
  else if (style.marker === "triangle") shape = svg("path", { d: `M${x} ${y - 1.25 * r}L${x + 1.15 * r} ${y + 0.85 * r}L${x - 1.15 * r} ${y + 0.85 * r}Z` });
  else shape = svg("path", { d: `M${x} ${y - 1.35 * r}L${x + 1.35 * r} ${y}L${x} ${y + 1.35 * r}L${x - 1.35 * r} ${y}Z` });
  shape.setAttribute("fill", style.marker === "ring" ? "#ffffff" : style.color);
  shape.setAttribute("stroke", style.color);
  shape.setAttribute("stroke-width", style.marker === "ring" ? "1.8" : "1");
  return shape;
}

// A bucket's label is its local start (2026-03-30T00:00:00+02:00): its date is
// already the reader's date, so it is shown as a calendar date, not converted.
function bucketDate(label) {
  const [year, month, day] = label.slice(0, 10).split("-").map(Number);
  return new Date(Date.UTC(year, month - 1, day));
}

function bucketText(label, every, short = false) {
  const date = bucketDate(label);
  if (every === "month") return date.toLocaleDateString(undefined, { month: short ? "short" : "long", year: short ? "2-digit" : "numeric", timeZone: "UTC" });
  const text = date.toLocaleDateString(undefined, short ? { month: "short", day: "numeric", timeZone: "UTC" } : { dateStyle: "medium", timeZone: "UTC" });
  return every === "week" && !short ? `Week of ${text}` : text;
}

function niceStep(span, ticks) {
  const raw = span / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

function renderChart(s) {
  const box = $("chart");
  const column = METRICS.find((c) => c.key === s.metric);
  const metricName = $("metric").selectedOptions[0].textContent;
  chartView = null;
  $("chart-note").textContent = s.chart.length
    ? `${counts.format(s.chart.length)} values charted (up to ${MAX_CHARTED}); a row's box adds or removes one.`
    : `The top ${CHARTED_BY_DEFAULT} values by ${metricName}; a row's box adds or removes one (up to ${MAX_CHARTED}).`;
  if (!series || !series.buckets.length || !series.series.length) {
    box.replaceChildren(cell("p", "muted empty", "Nothing to chart in this window."));
    $("legend").replaceChildren();
    return;
  }
  const buckets = series.buckets;
  const lines = series.series.map((one, index) => ({ name: one.name, values: one[column.key], style: seriesStyle(index) }));
  const numbers = lines.flatMap((line) => line.values.map(Number));
  let low = Math.min(0, ...numbers);
  let high = Math.max(...numbers);
  if (high === low) high = low + 1;
  const step = niceStep(high - low, 4);
  low = Math.floor(low / step) * step;
  high = Math.ceil(high / step) * step;
  const ticks = [];
  for (let tick = low; tick <= high + step / 2; tick += step) ticks.push(tick);
  const tickText = (value) => (column.kind === "money" || Math.abs(value) >= 10000 ? compact.format(value) : counts.format(value));

  const width = Math.max(260, Math.floor(box.clientWidth || 600));
  const height = width < 520 ? 220 : 260;
  const left = 12 + 7 * Math.max(...ticks.map((tick) => tickText(tick).length));
  const right = 14;
  const top = 12;
  const bottom = 30;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const x = (index) => left + (buckets.length === 1 ? plotWidth / 2 : (index * plotWidth) / (buckets.length - 1));
  const y = (value) => top + plotHeight * (1 - (Number(value) - low) / (high - low));

  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "trend", tabindex: "0", role: "application", "aria-roledescription": "chart", "aria-label": `${metricName} by ${series.interval}, ${lines.length} values. Arrow keys move between points.`, "aria-describedby": "chart-tip" });
  const grid = svg("g", { class: "axis" });
  for (const tick of ticks) {
    grid.append(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: tick === 0 ? "zero" : "" }));
    const label = svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end" });
    label.textContent = tickText(tick);
    grid.append(label);
  }
  const every = Math.max(1, Math.ceil(buckets.length / Math.max(1, Math.floor(plotWidth / 64))));
  buckets.forEach((bucket, index) => {
    if (index % every) return;
    const label = svg("text", { x: x(index), y: height - 10, "text-anchor": buckets.length === 1 ? "middle" : index === 0 ? "start" : "middle" });
    label.textContent = bucketText(bucket, series.interval, true);
    grid.append(label);
  });
  chart.append(grid);

  const size = buckets.length > 60 ? 2.2 : 3.4;
  lines.forEach((line, lineIndex) => {
    const group = svg("g", { class: "series" });
    group.dataset.name = line.name;
    const path = line.values.map((value, index) => `${index ? "L" : "M"}${x(index).toFixed(1)} ${y(value).toFixed(1)}`).join("");
    group.append(svg("path", { d: path, fill: "none", stroke: line.style.color, "stroke-width": "2", "stroke-dasharray": line.style.dash, "stroke-linejoin": "round" }));
    line.values.forEach((value, index) => {
      const point = marker(line.style, x(index), y(value), size);
      point.classList.add("point");
      point.dataset.name = line.name;
      point.dataset.bucket = buckets[index];
      point.dataset.value = String(value);
      point.dataset.series = lineIndex;
      point.dataset.index = index;
      group.append(point);
    });
    chart.append(group);
  });
  const cursor = svg("circle", { r: size + 4, class: "cursor", visibility: "hidden" });
  chart.append(cursor);
  const tip = document.createElement("div");
  tip.id = "chart-tip";
  tip.className = "tooltip";
  tip.setAttribute("role", "status");
  tip.hidden = true;
  box.replaceChildren(chart, tip);
  chartView = { lines, buckets, x, y, width, column, interval: series.interval, chart, cursor, tip, at: null };

  $("legend").replaceChildren(...lines.map((line) => {
    const li = document.createElement("li");
    li.dataset.name = line.name;
    const sample = svg("svg", { width: 34, height: 14, viewBox: "0 0 34 14", "aria-hidden": "true" });
    sample.append(svg("line", { x1: 1, x2: 33, y1: 7, y2: 7, stroke: line.style.color, "stroke-width": "2", "stroke-dasharray": line.style.dash }));
    sample.append(marker(line.style, 17, 7, 3.6));
    li.append(sample, cell("span", "legend-name", line.name));
    return li;
  }));
}

function showPoint(lineIndex, index) {
  const view = chartView;
  if (!view) return;
  const line = view.lines[lineIndex];
  const value = line.values[index];
  view.at = { lineIndex, index };
  view.cursor.setAttribute("cx", view.x(index));
  view.cursor.setAttribute("cy", view.y(value));
  view.cursor.setAttribute("stroke", line.style.color);
  view.cursor.setAttribute("visibility", "visible");
  const name = cell("strong", "tip-name", line.name);
  const bucket = cell("span", "tip-bucket", bucketText(view.buckets[index], view.interval));
  const amount = cell("span", "tip-value", `${$("metric").selectedOptions[0].textContent}: ${format(value, view.column.kind)}`);
  view.tip.replaceChildren(name, bucket, amount);
  view.tip.dataset.name = line.name;
  view.tip.dataset.bucket = view.buckets[index];
  view.tip.dataset.value = String(value);
  view.tip.hidden = false;
  // The SVG is drawn at the box's width, so its units are the box's pixels.
  const scale = view.chart.getBoundingClientRect().width / view.width || 1;
  const px = view.x(index) * scale;
  const py = view.y(value) * scale;
  const tipWidth = view.tip.offsetWidth;
  view.tip.style.left = `${Math.min(Math.max(0, px - tipWidth / 2), $("chart").clientWidth - tipWidth)}px`;
  view.tip.style.top = `${Math.max(0, py - view.tip.offsetHeight - 12)}px`;
}

function hidePoint() {
  if (!chartView) return;
  chartView.tip.hidden = true;
  chartView.cursor.setAttribute("visibility", "hidden");
  chartView.at = null;
}

function nearestPoint(event) {
  const view = chartView;
  const rect = view.chart.getBoundingClientRect();
  const scale = view.width / rect.width;
  const px = (event.clientX - rect.left) * scale;
  const py = (event.clientY - rect.top) * scale;
  let index = 0;
  for (let i = 1; i < view.buckets.length; i += 1) if (Math.abs(view.x(i) - px) < Math.abs(view.x(index) - px)) index = i;
  let lineIndex = 0;
  view.lines.forEach((line, i) => {
    if (Math.abs(view.y(line.values[index]) - py) < Math.abs(view.y(view.lines[lineIndex].values[index]) - py)) lineIndex = i;
  });
  return { lineIndex, index };
}

function chartKey(event) {
  const view = chartView;
  if (!view) return;
  const at = view.at || { lineIndex: 0, index: 0 };
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0], Home: [0, -Infinity], End: [0, Infinity] };
  if (event.key === "Escape") return hidePoint();
  if (!(event.key in moves)) return;
  event.preventDefault();
  const [dl, di] = moves[event.key];
  const clamp = (value, most) => Math.min(most, Math.max(0, value));
  showPoint(clamp(at.lineIndex + dl, view.lines.length - 1), clamp(at.index + di, view.buckets.length - 1));
}

// ------------------------------------------------------------------ drilldown --

function renderDrilldown(s) {
  $("drill-title").textContent = `Leads of ${JSON.stringify(s.value)}`;
  $("drill-note").textContent = `${counts.format(leads.length)} of ${counts.format(leadTotal)} leads, most recent first touch first, grouped by ${s.group_by}.`;
  $("drill-head").replaceChildren(...LEAD_COLUMNS.map((column) => cell("th", column.kind, column.label)));
  $("drill-body").replaceChildren(...leads.map((lead) => {
    const tr = document.createElement("tr");
    for (const column of LEAD_COLUMNS) tr.append(cell("td", column.kind, format(lead[column.key], column.kind)));
    return tr;
  }));
  const more = $("load-more");
  more.hidden = leads.length >= leadTotal;
  more.textContent = `Load ${counts.format(Math.min(PAGE, leadTotal - leads.length))} more leads`;
}

async function loadMore() {
  const s = state();
  const ticket = renders;
  const params = query(s);
  params.set("offset", leads.length);
  params.set("limit", PAGE);
  $("load-more").disabled = true;
  try {
    const { body, response } = await api(leadsUrl(s.value, params));
    if (ticket !== renders) return;
    leads = leads.concat(body.leads);
    leadTotal = Number(response.headers.get("X-Total-Count")) || leads.length;
    renderDrilldown(s);
  } catch (error) {
    showMessage(explain(error));
  } finally {
    $("load-more").disabled = false;
  }
}

// ------------------------------------------------------------------- load --

// The window, time zone and filters every request of the view shares; ``except``
// leaves one filter out (a facet's choices are counted without its own filter).
function query(s, except = null) {
  const params = new URLSearchParams({ group_by: s.group_by, tz: s.tz });
  for (const [key, value] of Object.entries(windowDates(s))) if (value) params.set(key, value);
  for (const facet of FACETS) if (facet.param !== except) for (const value of s[facet.param]) params.append(facet.param, value);
  return params;
}

function timeseriesQuery(s) {
  const params = query(s);
  params.set("interval", interval(s));
  for (const name of charted(s)) params.append("name", name);
  return params;
}

// The leads of a value. A URL path cannot hold the values "." and "..": the
// browser drops them as dot segments, %2E included, so those are named in the query.
function leadsUrl(value, params) {
  if (value === "." || value === "..") {
    params.set("campaign_name", value);
    return `/analytics/campaigns/leads?${params}`;
  }
  return `/analytics/campaigns/${encodeURIComponent(value)}/leads?${params}`;
}

function noteSnapshot(response) {
  const at = response.headers.get("X-Snapshot-At");
  if (at) snapshotAt = new Date(at);
  freshness();
}

async function chooseOrgUnit(id) {
  await api("/org-units/active", { method: "POST", body: JSON.stringify({ org_unit_id: id }), headers: { "Content-Type": "application/json" } });
}

async function loadOrgUnits() {
  let { body } = await api("/org-units");
  // A shared link names its org unit: make it the active one when the reader may read it.
  const wanted = state().ou;
  const active = body.org_units.find((unit) => unit.active);
  if (wanted && (!active || active.id !== wanted) && body.org_units.some((unit) => unit.id === wanted)) {
    await chooseOrgUnit(wanted);
    ({ body } = await api("/org-units"));
  }
  const select = $("org-unit");
  select.replaceChildren(...body.org_units.map((unit) => {
    const option = document.createElement("option");
    option.value = unit.id;
    option.textContent = unit.name;
    option.selected = unit.active;
    return option;
  }));
  $("unit-label").hidden = body.org_units.length === 0;
  if (!body.org_units.some((unit) => unit.active) && body.org_units.length) {
    await chooseOrgUnit(body.org_units[0].id);
    select.value = body.org_units[0].id;
  }
  if (select.value) setState({ ou: select.value });
}

function fillZones(current) {
  const select = $("tz");
  let names = [];
  try { names = Intl.supportedValuesOf("timeZone"); } catch { names = []; }
  const known = new Set(names);
  const first = [BROWSER_TZ, "UTC", current].filter((name, index, all) => all.indexOf(name) === index);
  const options = [...first, ...names.filter((name) => !first.includes(name))];
  if (select.options.length !== options.length || !known.has(current)) {
    select.replaceChildren(...options.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name === BROWSER_TZ ? `${name} (this browser)` : name;
      return option;
    }));
  }
  select.value = current;
}

async function loadOverview(s, ticket) {
  const [aggregate, total, ...choices] = await Promise.all([
    api(`/analytics/campaigns?${query(s)}`),
    api(`/analytics/campaigns/totals?${query(s)}`),
    ...FACETS.map((facet) => {
      const params = query(s, facet.param);
      params.set("group_by", facet.key);
      return api(`/analytics/campaigns?${params}`);
    }),
  ]);
  if (ticket !== renders) return;
  rows = aggregate.body.campaigns;
  totals = total.body.totals;
  facets = Object.fromEntries(FACETS.map((facet, index) => [facet.param, choices[index].body.campaigns]));
  noteSnapshot(aggregate.response);
  renderFilters(s);
  renderTable(s);
  $("drilldown").hidden = true;
  $("overview").hidden = false;
  await loadChart(s, ticket);
}

async function loadChart(s, ticket) {
  let answer = null;
  if (charted(s).length) {
    try {
      answer = await api(`/analytics/campaigns/timeseries?${timeseriesQuery(s)}`);
    } catch (error) {
      if (ticket !== renders) return;
      series = null;
      renderChart(s);
      $("chart").replaceChildren(cell("p", "muted empty", explain(error)));
      return;
    }
  }
  if (ticket !== renders) return;
  series = answer && answer.body;
  renderChart(s);
}

// The charted values, metric or interval changed: only the chart is fetched again
// (and the rows' boxes follow), unless the whole view is still loading.
async function refreshChart() {
  if (document.body.classList.contains("loading") || state().value !== null) return render();
  const ticket = ++renders;
  const s = state();
  $("interval").value = interval(s);
  renderTable(s);
  document.body.classList.add("loading");
  try {
    await loadChart(s, ticket);
  } finally {
    if (ticket === renders) document.body.classList.remove("loading");
  }
}

async function loadDrilldown(s, ticket) {
  const { body, response } = await api(leadsUrl(s.value, query(s)));
  if (ticket !== renders) return;
  leads = body.leads;
  leadTotal = Number(response.headers.get("X-Total-Count")) || leads.length;
  noteSnapshot(response);
  renderDrilldown(s);
  if ($("drilldown").hidden) window.scrollTo(0, 0);  // a new view starts at its top
  $("overview").hidden = true;
  $("drilldown").hidden = false;
}

async function render() {
  const ticket = ++renders;
  const s = state();
  times = dateTimes(s.tz);
  $("group-by").value = s.group_by;
  $("window").value = s.window;
  $("custom-dates").hidden = s.window !== "custom";
  $("start").value = s.start;
  $("end").value = s.end;
  fillZones(s.tz);
  $("filter").value = s.q;
  $("metric").value = s.metric;
  $("interval").value = interval(s);
  document.body.classList.add("loading");
  try {
    if (s.value !== null) await loadDrilldown(s, ticket);
    else await loadOverview(s, ticket);
    if (ticket === renders) showMessage("");
  } catch (error) {
    if (ticket !== renders) return;
    showMessage(explain(error));
    if (error instanceof ApiError && error.status === 401) signOut(false);
  } finally {
    if (ticket === renders) document.body.classList.remove("loading");
  }
}

function signOut(clear = true) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("sign-in").hidden = false;
  $("overview").hidden = true;
  $("drilldown").hidden = true;
  $("sign-out").hidden = true;
  $("unit-label").hidden = true;
  $("freshness").textContent = "";
  if (clear) showMessage("");
}

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    signOut(false);
    $("token").focus();
    return;
  }
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  try {
    await loadOrgUnits();
  } catch (error) {
    showMessage(explain(error));
    if (error instanceof ApiError && error.status === 401) signOut(false);
    return;
  }
  setState({});
  await render();
}

// ----------------------------------------------------------------- wiring --

function toggleFilter(param, value) {
  const chosen = state()[param];
  setState({ [param]: chosen.includes(value) ? chosen.filter((v) => v !== value) : [...chosen, value] }, { push: true });
  render();
}

document.addEventListener("DOMContentLoaded", () => {
  // Every control applies itself as it changes: the form is never sent (Enter in the filter).
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("org-unit").addEventListener("change", async (event) => {
    try {
      await chooseOrgUnit(event.target.value);
      // Filters and charted values name values of the org unit left behind.
      const cleared = Object.fromEntries(FACETS.map((facet) => [facet.param, []]));
      setState({ value: null, ou: event.target.value, chart: [], ...cleared }, { push: true });
      await render();
    } catch (error) {
      showMessage(explain(error));
    }
  });
  $("group-by").addEventListener("change", (event) => { setState({ group_by: event.target.value, chart: [] }, { push: true }); render(); });
  $("window").addEventListener("change", (event) => { setState({ window: event.target.value }, { push: true }); render(); });
  $("tz").addEventListener("change", (event) => { setState({ tz: event.target.value }, { push: true }); render(); });
  for (const id of ["start", "end"]) {
    $(id).addEventListener("change", (event) => { setState({ [id]: event.target.value }, { push: true }); render(); });
  }
  $("filter").addEventListener("input", (event) => { setState({ q: event.target.value }); renderTable(state()); });
  $("metric").addEventListener("change", (event) => { setState({ metric: event.target.value }); refreshChart(); });
  $("interval").addEventListener("change", (event) => { setState({ interval: event.target.value }); refreshChart(); });
  for (const details of document.querySelectorAll("details.facet")) {
    details.querySelector(".facet-find").addEventListener("input", () => renderFacet(state(), details));
    details.querySelector(".chips").addEventListener("click", (event) => {
      const button = event.target.closest("button.chip");
      if (button) toggleFilter(button.dataset.param, button.dataset.value);
    });
  }
  $("active-filters").addEventListener("click", (event) => {
    const button = event.target.closest("button.chip");
    if (button) toggleFilter(button.dataset.param, button.dataset.value);
  });
  $("clear-filters").addEventListener("click", () => {
    setState(Object.fromEntries(FACETS.map((facet) => [facet.param, []])), { push: true });
    render();
  });
  $("table-head").addEventListener("click", (event) => {
    const button = event.target.closest("button.sort");
    if (!button) return;
    const s = state();
    const dir = s.sort === button.dataset.key && s.dir === "desc" ? "asc" : "desc";
    setState({ sort: button.dataset.key, dir });
    renderTable(state());
    document.querySelector(`button.sort[data-key="${button.dataset.key}"]`).focus();
  });
  $("table-body").addEventListener("click", (event) => {
    const button = event.target.closest("button.row-link");
    if (!button) return;
    setState({ value: button.dataset.value }, { push: true });
    render();
  });
  $("table-body").addEventListener("change", (event) => {
    const pick = event.target.closest("input.chart-pick");
    if (!pick) return;
    const now = charted(state());
    const next = pick.checked ? [...now, pick.dataset.value] : now.filter((name) => name !== pick.dataset.value);
    setState({ chart: next.slice(0, MAX_CHARTED) });
    refreshChart();
  });
  const chart = $("chart");
  // pointerdown too: a tap on a phone moves no pointer before it.
  for (const type of ["pointermove", "pointerdown"]) {
    chart.addEventListener(type, (event) => {
      if (chartView && event.target.closest("svg.trend")) {
        const at = nearestPoint(event);
        showPoint(at.lineIndex, at.index);
      }
    });
  }
  chart.addEventListener("pointerleave", () => { if (document.activeElement !== chartView?.chart) hidePoint(); });
  chart.addEventListener("focusin", () => { if (chartView && !chartView.at) showPoint(0, chartView.buckets.length - 1); });
  chart.addEventListener("focusout", hidePoint);
  chart.addEventListener("keydown", chartKey);
  let width = 0;
  new ResizeObserver(() => {
    if (chart.clientWidth !== width && chartView) {
      width = chart.clientWidth;
      renderChart(state());
    }
  }).observe(chart);
  $("back").addEventListener("click", () => { setState({ value: null }, { push: true }); render(); });
  $("load-more").addEventListener("click", loadMore);
  $("download").addEventListener("click", (event) => {
    const s = state();
    download(event.currentTarget, `${s.group_by}-values.csv`, () => csvOf(`/analytics/campaigns?${query(s)}&format=csv`));
  });
  $("chart-download").addEventListener("click", (event) => {
    const s = state();
    download(event.currentTarget, `${s.group_by}-by-${interval(s)}.csv`, () => csvOf(`/analytics/campaigns/timeseries?${timeseriesQuery(s)}&format=csv`));
  });
  $("drill-download").addEventListener("click", (event) => {
    const s = state();
    download(event.currentTarget, `leads-${s.value}.csv`, () => leadsCsv(s));
  });
  window.addEventListener("popstate", render);
  setInterval(freshness, 5000);
  start();
});
