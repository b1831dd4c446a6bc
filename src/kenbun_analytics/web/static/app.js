// The Campaigns page: plain JavaScript over our own API. The query string holds the
// whole view (grouping, window, sort, filter, chart metric, open drilldown), so any
// view can be bookmarked and shared.
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

const $ = (id) => document.getElementById(id);
const counts = new Intl.NumberFormat(undefined);
const money = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const times = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" });

let rows = [];
let leads = [];
let snapshotAt = null;

// ------------------------------------------------------------------ state --

function state() {
  const q = new URLSearchParams(location.search);
  return {
    group_by: ["campaign", "source", "medium"].includes(q.get("group_by")) ? q.get("group_by") : "campaign",
    window: q.get("window") || "30",
    start: q.get("start") || "",
    end: q.get("end") || "",
    sort: q.get("sort") || "total_events",
    dir: q.get("dir") === "asc" ? "asc" : "desc",
    q: q.get("q") || "",
    metric: q.get("metric") || "pipeline_value",
    value: q.get("value"),
    ou: q.get("ou") || "",
  };
}

function setState(changes, { push = false } = {}) {
  const next = { ...state(), ...changes };
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(next)) {
    if (value !== null && value !== undefined && value !== "") q.set(key, value);
  }
  const url = `${location.pathname}?${q}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function windowDates(s) {
  const today = new Date();
  const day = (offset) => isoDay(new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - offset)));
  if (s.window === "all") return {};
  if (s.window === "custom") return { start_date: s.start || undefined, end_date: s.end || undefined };
  if (s.window === "quarter") {
    const month = today.getUTCMonth() - (today.getUTCMonth() % 3);
    return { start_date: isoDay(new Date(Date.UTC(today.getUTCFullYear(), month, 1))), end_date: day(0) };
  }
  const days = Number(s.window) || 30;
  return { start_date: day(days - 1), end_date: day(0) };
}

// -------------------------------------------------------------------- api --

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, {
    ...options,
    headers: { Accept: "application/json", Authorization: `Bearer ${token}`, ...(options.headers || {}) },
    credentials: "same-origin",
  });
  if (response.status === 204) return { body: null, response };
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) throw new ApiError(response.status, body && body.detail ? body.detail : response.statusText);
  return { body, response };
}

function explain(error) {
  if (!(error instanceof ApiError)) return "The service cannot be reached. Check your connection and retry.";
  if (error.status === 401) return "Your token is invalid, expired or revoked. Sign in again with a valid token.";
  if (error.status === 403) return `No access: ${error.message}`;
  if (error.status === 503) return "The service is still loading this org unit's data. Retry in a few seconds.";
  if (error.status === 400) return error.message;
  return `Something went wrong (${error.status}). Retry later.`;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

// ------------------------------------------------------------- formatting --

function format(value, kind) {
  if (value === null || value === undefined) return "—";
  if (kind === "count") return counts.format(value);
  if (kind === "money") return money.format(value);
  if (kind === "time") return times.format(new Date(value));
  return String(value);
}

// A spreadsheet reads a cell starting with one of these as a formula (CSV
// injection): such a text cell is written with a leading ', which shows it as text.
const FORMULA_START = /^[=+\-@\t\r]/;

function csv(columns, data) {
  const escape = (value) => {
    let text = value === null || value === undefined ? "" : String(value);
    if (typeof value === "string" && FORMULA_START.test(text)) text = `'${text}`;
    return /[",\n\r]/.test(text) || /^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  const lines = [columns.map((c) => escape(c.key)).join(",")];
  for (const row of data) lines.push(columns.map((c) => escape(row[c.key])).join(","));
  return lines.join("\r\n") + "\r\n";
}

function download(name, text) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

function freshness() {
  if (!snapshotAt) return;
  const seconds = Math.max(0, Math.round((Date.now() - snapshotAt.getTime()) / 1000));
  const age = seconds < 90 ? `${seconds} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`;
  $("freshness").textContent = `data as of ${age} ago`;
  $("freshness").title = snapshotAt.toISOString();
}

// ------------------------------------------------------------------ views --

function compare(key, dir) {
  const sign = dir === "asc" ? 1 : -1;
  return (a, b) => {
    const x = a[key];
    const y = b[key];
    if (x === y) return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    if (x === null) return 1;
    if (y === null) return -1;
    return (typeof x === "string" ? (x < y ? -1 : 1) : x - y) * sign;
  };
}

function visibleRows(s) {
  const needle = s.q.trim().toLowerCase();
  return rows.filter((row) => !needle || row.name.toLowerCase().includes(needle)).sort(compare(s.sort, s.dir));
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

function renderTable(s) {
  const head = $("table-head");
  head.replaceChildren(...COLUMNS.map((column) => {
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
  const drift = driftGroups();
  const drifted = new Set([...drift.values()].flat());
  const visible = visibleRows(s);
  $("table-body").replaceChildren(...visible.map((row) => {
    const tr = document.createElement("tr");
    for (const column of COLUMNS) {
      const td = document.createElement("td");
      td.className = column.kind;
      if (column.key === "name") {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "row-link";
        button.dataset.value = row.name;
        button.textContent = row.name;
        button.title = `Show the leads of ${JSON.stringify(row.name)}`;
        td.append(button);
        if (drifted.has(row.name)) {
          const flag = document.createElement("span");
          flag.className = "flag";
          flag.textContent = "drift";
          flag.title = "Differs from another value only by case or surrounding spaces";
          td.append(flag);
        }
      } else {
        td.textContent = format(row[column.key], column.kind);
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

function renderChart(s) {
  const column = COLUMNS.find((c) => c.key === s.metric) || COLUMNS[6];
  const top = [...rows].sort(compare(column.key, "desc")).slice(0, 10).filter((row) => row[column.key] > 0);
  const max = Math.max(1, ...top.map((row) => Number(row[column.key])));
  $("chart").replaceChildren(...top.map((row) => {
    const line = document.createElement("div");
    line.className = "bar-row";
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = row.name;
    label.title = row.name;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${(Number(row[column.key]) / max) * 100}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = format(row[column.key], column.kind);
    line.append(label, track, value);
    return line;
  }));
  if (!top.length) $("chart").textContent = "Nothing to chart in this window.";
}

function renderDrilldown(s) {
  $("drill-title").textContent = `Leads of ${JSON.stringify(s.value)}`;
  $("drill-note").textContent = `${counts.format(leads.length)} leads${leads.length === 500 ? " (the 500 with the most recent first touch)" : ""}, grouped by ${s.group_by}.`;
  $("drill-head").replaceChildren(...LEAD_COLUMNS.map((column) => {
    const th = document.createElement("th");
    th.className = column.kind;
    th.textContent = column.label;
    return th;
  }));
  $("drill-body").replaceChildren(...leads.map((lead) => {
    const tr = document.createElement("tr");
    for (const column of LEAD_COLUMNS) {
      const td = document.createElement("td");
      td.className = column.kind;
      td.textContent = format(lead[column.key], column.kind);
      tr.append(td);
    }
    return tr;
  }));
}

// ------------------------------------------------------------------- load --

function query(s) {
  const params = new URLSearchParams({ group_by: s.group_by });
  for (const [key, value] of Object.entries(windowDates(s))) if (value) params.set(key, value);
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

async function render() {
  const s = state();
  $("group-by").value = s.group_by;
  $("window").value = s.window;
  $("custom-dates").hidden = s.window !== "custom";
  $("start").value = s.start;
  $("end").value = s.end;
  $("filter").value = s.q;
  $("metric").value = s.metric;
  document.body.classList.add("loading");
  try {
    if (s.value !== null) {
      const { body, response } = await api(leadsUrl(s.value, query(s)));
      leads = body.leads;
      noteSnapshot(response);
      renderDrilldown(s);
      $("overview").hidden = true;
      $("drilldown").hidden = false;
    } else {
      const { body, response } = await api(`/analytics/campaigns?${query(s)}`);
      rows = body.campaigns;
      noteSnapshot(response);
      renderTable(s);
      renderChart(s);
      $("drilldown").hidden = true;
      $("overview").hidden = false;
    }
    showMessage("");
  } catch (error) {
    showMessage(explain(error));
    if (error instanceof ApiError && error.status === 401) signOut(false);
  } finally {
    document.body.classList.remove("loading");
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
  await render();
}

// ----------------------------------------------------------------- wiring --

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
      setState({ value: null, ou: event.target.value }, { push: true });
      await render();
    } catch (error) {
      showMessage(explain(error));
    }
  });
  $("group-by").addEventListener("change", (event) => { setState({ group_by: event.target.value }, { push: true }); render(); });
  $("window").addEventListener("change", (event) => { setState({ window: event.target.value }, { push: true }); render(); });
  for (const id of ["start", "end"]) {
    $(id).addEventListener("change", (event) => { setState({ [id]: event.target.value }, { push: true }); render(); });
  }
  $("filter").addEventListener("input", (event) => { setState({ q: event.target.value }); renderTable(state()); });
  $("metric").addEventListener("change", (event) => { setState({ metric: event.target.value }); renderChart(state()); });
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
  $("back").addEventListener("click", () => { setState({ value: null }, { push: true }); render(); });
  $("download").addEventListener("click", () => download(`${state().group_by}-values.csv`, csv(COLUMNS, visibleRows(state()))));
  $("drill-download").addEventListener("click", () => download(`leads-${state().value}.csv`, csv(LEAD_COLUMNS, leads)));
  window.addEventListener("popstate", render);
  setInterval(freshness, 5000);
  start();
});
