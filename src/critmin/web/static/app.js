// critmin web application: a scenario builder with forms generated from the scenario JSON Schema, run and
// ensemble views, stored runs and comparisons. It talks only to critmin's own HTTP API (/api) and loads
// plotly.js and the world topojson from the app itself, so it works with no network.
"use strict";

const PLOT_CONFIG = { displaylogo: false, responsive: true, topojsonURL: "/vendor/topojson/" };
const S = { schema: null, worlds: {}, scenario: null, validateTimer: null, pollTimer: null, runId: null, compareIds: [] };

// ---------------------------------------------------------------------------------------------- utilities
async function api(path, options = {}) {
  const opts = Object.assign({ headers: { "Content-Type": "application/json" } }, options);
  if (opts.body && typeof opts.body !== "string") opts.body = JSON.stringify(opts.body);
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    const detail = data && data.detail !== undefined ? data.detail : res.statusText;
    const text = Array.isArray(detail) ? detail.map(d => (d.field ? d.field + ": " : "") + (d.reason || d.msg || JSON.stringify(d))).join("; ") : String(detail);
    const err = new Error(text); err.status = res.status; err.detail = detail; throw err;
  }
  return data;
}
const $ = id => document.getElementById(id);
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function download(name, text, type) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a); a.click(); a.remove();
}
function fmt(v, unit) {
  if (v === null || v === undefined || (typeof v === "number" && !isFinite(v))) return "–";
  if (typeof v !== "number") return String(v);
  if (unit === "1") return (100 * v).toFixed(1) + "%";
  if (unit === "USD") return Math.abs(v) >= 1e9 ? (v / 1e9).toFixed(2) + " bn USD" : (v / 1e6).toFixed(1) + " M USD";
  if (unit === "periods" || unit === "regions") return v.toFixed(0);
  return v.toPrecision(4) + " " + unit;
}

// ------------------------------------------------------------------------------------ schema-driven forms
function deref(s) {
  let guard = 0;
  while (s && s.$ref && guard++ < 20) s = S.schema.$defs[s.$ref.split("/").pop()];
  return s || {};
}
function options(s) { return (s.anyOf || s.oneOf || []).map(deref).filter(o => o.type !== "null"); }
function widget(s) {
  s = deref(s);
  if (s.const !== undefined) return "const";
  if (s.enum) return "enum";
  if (s.anyOf || s.oneOf) {
    const opts = options(s);
    if (opts.length === 1) return widget(opts[0]);
    if (opts.some(o => o.type === "object" && o.properties)) return "object";
    if (opts.some(o => o.type === "array")) return "list-or-text";
    if (opts.every(o => o.type === "boolean")) return "bool";
    return "scalar";
  }
  if (s.type === "boolean") return "bool";
  if (s.type === "number" || s.type === "integer") return "number";
  if (s.type === "string") return "text";
  if (s.type === "array") { const it = deref(s.items || {}); return it.type === "object" && it.properties ? "objlist" : "list"; }
  if (s.type === "object") return s.properties ? "object" : "map";
  return "scalar";
}
function objectSchema(s) {
  s = deref(s);
  if (s.properties) return s;
  return options(s).find(o => o.type === "object" && o.properties) || s;
}
function parseScalar(text) {
  const t = text.trim();
  if (t === "") return undefined;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
  if (t === "true") return true;
  if (t === "false") return false;
  return t;
}
function showValue(v) {
  if (v === undefined || v === null) return "";
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "object") return Object.entries(v).map(([k, x]) => k + ": " + x).join(", ");
  return String(v);
}
function setPath(obj, key, value) { if (value === undefined) delete obj[key]; else obj[key] = value; }

// One field of an object: label + input bound to obj[key]; path is the dotted field path for errors.
function field(obj, key, s, path, required) {
  const sch = deref(s);
  const kind = widget(sch);
  const title = sch.title || (s.title) || key;
  const help = s.description || sch.description || "";
  const change = () => scheduleValidate();
  let input;
  if (kind === "const") return null;
  if (kind === "object") {
    const os = objectSchema(sch);
    const nullable = (sch.anyOf || []).some(o => o.type === "null");
    const box = el("fieldset", {}, el("legend", { text: title }));
    if (nullable) {
      const on = el("input", { type: "checkbox", "data-path": path });
      on.checked = obj[key] !== undefined && obj[key] !== null;
      const inner = el("div");
      const draw = () => { inner.innerHTML = ""; if (on.checked) { obj[key] = obj[key] || {}; inner.append(objectForm(obj[key], os, path)); } };
      on.addEventListener("change", () => { if (!on.checked) delete obj[key]; draw(); change(); });
      box.append(el("label", { class: "field check" }, on, el("span", { text: "set " + title })), inner);
      draw();
    } else {
      obj[key] = obj[key] || {};
      box.append(objectForm(obj[key], os, path));
    }
    return box;
  }
  if (kind === "objlist") {
    const itemSchema = deref(sch.items || options(sch).find(o => o.type === "array").items);
    const box = el("fieldset", {}, el("legend", { text: title }));
    const list = el("div");
    const draw = () => {
      list.innerHTML = "";
      (obj[key] || []).forEach((item, i) => {
        list.append(el("div", { class: "instrument" },
          el("header", {}, el("b", { text: `${title} ${i + 1}` }), el("span", { class: "desc" }),
            el("button", { class: "remove", onclick: () => { obj[key].splice(i, 1); draw(); change(); } }, "Remove")),
          objectForm(item, itemSchema, `${path}.${i}`)));
      });
    };
    box.append(list, el("button", { class: "secondary", onclick: () => { obj[key] = obj[key] || []; obj[key].push({}); draw(); change(); } }, "Add"));
    draw();
    return box;
  }
  if (kind === "bool") {
    input = el("input", { type: "checkbox", "data-path": path });
    input.checked = obj[key] !== undefined ? !!obj[key] : !!sch.default;
    input.addEventListener("change", () => { obj[key] = input.checked; change(); });
    return el("label", { class: "field check", title: help }, input, el("span", { text: title }));
  }
  if (kind === "enum") {
    input = el("select", { "data-path": path });
    if (!required) input.append(el("option", { value: "", text: sch.default !== undefined ? `(default: ${sch.default})` : "(not set)" }));
    for (const v of sch.enum) input.append(el("option", { value: v, text: v }));
    input.value = obj[key] !== undefined ? obj[key] : "";
    input.addEventListener("change", () => { setPath(obj, key, input.value === "" ? undefined : input.value); change(); });
  } else {
    input = el("input", { type: "text", "data-path": path, value: showValue(obj[key]), placeholder: sch.default !== undefined && sch.default !== null && sch.default !== "" ? "default: " + showValue(sch.default) : (kind === "list" || kind === "list-or-text" ? "comma-separated" : "") });
    input.addEventListener("input", () => {
      const t = input.value;
      let v;
      if (kind === "list") v = t.trim() === "" ? undefined : t.split(",").map(x => parseScalar(x)).filter(x => x !== undefined);
      else if (kind === "list-or-text") {
        const parts = t.split(",").map(x => x.trim()).filter(x => x);
        const plain = options(sch).some(o => o.type === "string" && o.const === undefined && !o.enum);
        const consts = options(sch).filter(o => o.const !== undefined).map(o => o.const);
        v = parts.length === 0 ? undefined : (parts.length === 1 && (plain || consts.includes(parts[0])) ? parts[0] : parts);
      } else if (kind === "map") {
        if (t.trim() === "") v = undefined;
        else { v = {}; for (const part of t.split(",")) { const [k, x] = part.split(":").map(y => (y || "").trim()); if (k) v[k] = parseScalar(x || "") ?? ""; } }
      } else if (kind === "text") v = t === "" ? undefined : t;
      else v = parseScalar(t);
      setPath(obj, key, v);
      change();
    });
  }
  return el("label", { class: "field", title: help }, el("span", {}, title, required ? " *" : "", help ? el("em", { text: " " + help.slice(0, 70) }) : null), input);
}

// A form for an object schema: required and set fields shown, the rest under "More options".
function objectForm(obj, s, path) {
  s = objectSchema(s);
  const req = new Set(s.required || []);
  const main = el("div", { class: "form-grid" });
  const more = el("div", { class: "form-grid" });
  const wide = [];
  for (const [key, ps] of Object.entries(s.properties || {})) {
    const f = field(obj, key, ps, path ? `${path}.${key}` : key, req.has(key));
    if (!f) continue;
    if (f.tagName === "FIELDSET") { wide.push(f); continue; }
    (req.has(key) || obj[key] !== undefined ? main : more).append(f);
  }
  const out = el("div", {}, main, ...wide);
  if (more.children.length) out.append(el("details", { class: "more" }, el("summary", { text: `More options (${more.children.length})` }), more));
  return out;
}

// ------------------------------------------------------------------------------------------- the builder
function world() { return S.worlds[(S.scenario && S.scenario.world) || "default"] || S.worlds.default; }
function blankScenario() { return { name: "my-scenario", description: "", world: "default", blocs: {}, instruments: [] }; }

function renderBuilder() {
  const sc = S.scenario;
  sc.blocs = sc.blocs || {}; sc.instruments = sc.instruments || [];
  const top = S.schema.properties;
  const basics = $("scenario-basics"); basics.innerHTML = "";
  for (const key of ["name", "description", "world", "start", "end", "period", "minerals", "solver"]) {
    let f;
    if (key === "world") {
      const sel = el("select", { "data-path": "world" }, Object.keys(S.worlds).map(w => el("option", { value: w, text: w })));
      sel.value = sc.world || "default";
      sel.addEventListener("change", () => { sc.world = sel.value; renderBuilder(); scheduleValidate(); });
      f = el("label", { class: "field" }, el("span", { text: "World" }), sel);
    } else f = field(sc, key, top[key], key, key === "name");
    if (f) basics.append(f);
  }
  renderBlocs();
  renderInstruments();
  $("dynamics").innerHTML = ""; sc.dynamics = sc.dynamics || {};
  $("dynamics").append(objectForm(sc.dynamics, top.dynamics, "dynamics"));
  $("uncertainty").innerHTML = "";
  $("uncertainty").append(field(sc, "uncertainty", top.uncertainty, "uncertainty", false));
  scheduleValidate();
}

function renderBlocs() {
  const box = $("blocs"); box.innerHTML = "";
  const w = world();
  for (const [name, bloc] of Object.entries(S.scenario.blocs)) {
    bloc.members = bloc.members || [];
    const mapDiv = el("div", { class: "bloc-map", id: `bloc-map-${name}` });
    const regions = el("div", { class: "regions" }, w.regions.map(r => {
      const cb = el("input", { type: "checkbox", value: r.code, "data-region": r.code });
      cb.checked = bloc.members.includes(r.code);
      cb.addEventListener("change", () => { toggleMember(name, r.code, cb.checked); });
      return el("label", { title: r.name }, cb, `${r.code} · ${r.name}`);
    }));
    const joins = field(bloc, "joins", deref(S.schema.$defs.Bloc).properties.joins, `blocs.${name}.joins`, false);
    box.append(el("div", { class: "bloc", "data-bloc": name },
      el("header", { class: "toolbar" }, el("b", { text: name }), el("span", { class: "muted", text: `${bloc.members.length} members from the start, ${Object.keys(bloc.joins || {}).length} join later (light blue)` }), el("span", { class: "spacer" }),
        el("button", { class: "remove", onclick: () => { delete S.scenario.blocs[name]; renderBlocs(); scheduleValidate(); } }, "Remove bloc")),
      el("div", { class: "bloc-body" }, regions, mapDiv), joins));
    drawBlocMap(name);
  }
  if (!Object.keys(S.scenario.blocs).length) box.append(el("p", { class: "muted", text: "No blocs. Add one (e.g. 'club') to set members and refer to it in instruments." }));
}

function toggleMember(name, code, on) {
  const bloc = S.scenario.blocs[name];
  const set = new Set(bloc.members);
  if (on) set.add(code); else set.delete(code);
  bloc.members = world().regions.map(r => r.code).filter(c => set.has(c));
  const card = document.querySelector(`[data-bloc="${CSS.escape(name)}"]`);
  if (card) {
    card.querySelectorAll("input[data-region]").forEach(cb => { cb.checked = set.has(cb.value); });
    card.querySelector("header .muted").textContent = `${bloc.members.length} members from the start, ${Object.keys(bloc.joins || {}).length} join later (light blue)`;
  }
  drawBlocMap(name);
  scheduleValidate();
}

function drawBlocMap(name) {
  const div = $(`bloc-map-${name}`); if (!div) return;
  const bloc = S.scenario.blocs[name];
  const members = new Set(bloc.members), joining = new Set(Object.keys(bloc.joins || {}));
  const codes = [], z = [], region = [];
  for (const r of world().regions) for (const c of r.countries) {
    codes.push(c); region.push(r.code + (joining.has(r.code) ? ", joins " + bloc.joins[r.code] : ""));
    z.push(members.has(r.code) ? 1 : joining.has(r.code) ? 0.55 : 0);
  }
  const trace = { type: "choropleth", locationmode: "ISO-3", locations: codes, z, customdata: codes.map((c, i) => region[i].split(",")[0]), text: region,
    zmin: 0, zmax: 1, showscale: false, colorscale: [[0, "#e9ecef"], [0.55, "#91c3ee"], [1, "#1f5fa8"]],
    marker: { line: { color: "white", width: 0.4 } }, hovertemplate: "%{location} (%{text})<extra></extra>" };
  const layout = { margin: { l: 0, r: 0, t: 0, b: 0 }, height: 300,
    geo: { projection: { type: "natural earth" }, showframe: false, showcoastlines: false, showland: true, landcolor: "#f8f9fa",
           lataxis: { range: [-58, 85] }, center: { lat: 15, lon: 10 } } };
  Plotly.react(div, [trace], layout, PLOT_CONFIG).then(() => {
    if (div._critminBound) return;
    div._critminBound = true;
    div.on("plotly_click", ev => {
      const p = ev.points && ev.points[0]; if (!p) return;
      const code = p.customdata;
      toggleMember(name, code, !S.scenario.blocs[name].members.includes(code));
    });
  });
}

function instrumentKinds() {
  const mapping = S.schema.properties.instruments.items.discriminator.mapping;
  return Object.entries(mapping).map(([kind, ref]) => ({ kind, def: deref({ $ref: ref }) }));
}

function renderInstruments() {
  const box = $("instruments"); box.innerHTML = "";
  const kinds = Object.fromEntries(instrumentKinds().map(k => [k.kind, k.def]));
  S.scenario.instruments.forEach((inst, i) => {
    const def = kinds[inst.kind];
    const body = def ? objectForm(inst, def, `instruments.${i}`) : el("p", { class: "error", text: `unknown kind ${inst.kind}` });
    box.append(el("div", { class: "instrument", "data-instrument": i, "data-kind": inst.kind },
      el("header", {}, el("b", { text: `${i + 1}. ${inst.kind}` }), el("span", { class: "desc", text: (def && def.description || "").replace(/``/g, "") }),
        el("button", { class: "remove", onclick: () => { S.scenario.instruments.splice(i, 1); renderInstruments(); scheduleValidate(); } }, "Remove")),
      body));
  });
  if (!S.scenario.instruments.length) box.append(el("p", { class: "muted", text: "No instruments: the run follows reference demand growth and existing capacity." }));
}

function scheduleValidate() {
  clearTimeout(S.validateTimer);
  const badge = $("validation"); badge.className = "badge"; badge.textContent = "checking…";
  S.validateTimer = setTimeout(validateNow, 300);
}

async function validateNow() {
  const badge = $("validation");
  document.querySelectorAll(".invalid").forEach(e => e.classList.remove("invalid"));
  try {
    const res = await api("/api/validate", { method: "POST", body: { scenario: S.scenario } });
    if (res.valid) {
      badge.className = "badge ok"; badge.textContent = "valid · " + res.summary;
      $("run-button").disabled = false; $("ensemble-button").disabled = false;
      const y = await api("/api/yaml/export", { method: "POST", body: { scenario: S.scenario } });
      $("yaml-preview").textContent = y.yaml;
    } else {
      const e = res.errors[0];
      badge.className = "badge bad"; badge.textContent = `${e.field}: ${e.reason}`;
      $("run-button").disabled = true; $("ensemble-button").disabled = true;
      const candidates = [e.field, e.field.replace(/^(instruments\.\d+)\.[a-z_]+(\.|$)/, "$1$2")];
      for (const c of candidates) { const input = document.querySelector(`[data-path="${CSS.escape(c)}"]`); if (input) { input.classList.add("invalid"); break; } }
    }
  } catch (err) {
    badge.className = "badge bad"; badge.textContent = err.message;
  }
}

async function loadScenario(name) {
  if (!name) { S.scenario = blankScenario(); }
  else { const doc = await api(`/api/scenarios/${encodeURIComponent(name)}`); S.scenario = doc.scenario; }
  renderBuilder();
}

async function startRun(draws) {
  $("run-message").textContent = "starting…";
  try {
    const body = { scenario: S.scenario };
    if (draws) { body.draws = draws; body.seed = Number($("seed").value) || 0; }
    const res = await api("/api/runs", { method: "POST", body });
    $("run-message").textContent = "";
    location.hash = `#/run/${res.run_id}`;
  } catch (err) { $("run-message").textContent = err.message; $("run-message").className = "error"; }
}

// ------------------------------------------------------------------------------------------- run view
function chartDiv(container, key, wide) {
  let div = $(`chart-${key}`);
  if (!div) { div = el("div", { class: "chart" + (wide ? " wide" : ""), id: `chart-${key}`, "data-chart": key }); container.append(div); }
  return div;
}

async function showRun(runId) {
  S.runId = runId;
  clearTimeout(S.pollTimer);
  $("run-charts").innerHTML = ""; $("run-table").innerHTML = ""; $("run-error").textContent = "";
  for (const [id, fmtName] of [["dl-csv", "csv"], ["dl-parquet", "parquet"]]) $(id).href = `/api/runs/${runId}/export?format=${fmtName}`;
  $("dl-report").href = `/api/runs/${runId}/report`;
  const poll = async () => {
    if (S.runId !== runId) return;
    let st;
    try { st = await api(`/api/runs/${runId}`); } catch (err) { $("run-error").textContent = err.message; return; }
    $("run-title").textContent = `${st.scenario} · ${st.kind === "ensemble" ? st.draws + " draws" : "single run"}`;
    $("run-status").textContent = st.status; $("run-status").className = "badge " + (st.status === "complete" ? "ok" : st.status === "running" ? "run" : "bad");
    $("run-progress").style.width = `${Math.round(100 * (st.status === "complete" ? 1 : st.done / Math.max(st.draws, 1)))}%`;
    if (st.status === "running") { S.pollTimer = setTimeout(poll, 600); return; }
    if (st.status !== "complete") { $("run-error").textContent = st.error || `the run is ${st.status}`; return; }
    await renderRunView(runId, {});
  };
  poll();
}

async function renderRunView(runId, sel) {
  const q = new URLSearchParams(Object.entries(sel).filter(([, v]) => v));
  let v;
  try { v = await api(`/api/runs/${runId}/view?${q}`); } catch (err) { $("run-error").textContent = err.message; return; }
  if (S.runId !== runId) return;
  const fill = (id, values, current) => { const s = $(id); s.innerHTML = ""; for (const x of values || []) s.append(el("option", { value: x, text: x })); if (current) s.value = current; };
  fill("sel-mineral", v.minerals, v.mineral);
  document.querySelectorAll(".single-only").forEach(e => { e.style.display = v.kind === "single" ? "" : "none"; });
  if (v.kind === "single") { fill("sel-supplier", v.suppliers, v.supplier); fill("sel-period", v.periods, v.period); }
  const box = $("run-charts");
  const order = v.kind === "single" ? [["prices", true], ["shortfall", true], ["reserve", false], ["fiscal", false], ["sankey", true], ["map", true]]
    : [["price", false], ["shortfall_share", false], ["fiscal_cost", false], ["reserve_stock", false]];
  if (box.dataset.kind !== v.kind) { box.innerHTML = ""; box.dataset.kind = v.kind; }
  for (const [key, wide] of order) {
    const fig = v.figures[key]; if (!fig) continue;
    await Plotly.react(chartDiv(box, key, wide), fig.data, fig.layout, PLOT_CONFIG);
  }
  const table = $("run-table"); table.innerHTML = "";
  if (v.kind === "single") {
    $("table-title").textContent = `Headline metrics (${v.mineral}, and all minerals for money)`;
    table.append(el("thead", {}, el("tr", {}, ["Metric", "Mineral", "Bloc", "Value"].map(h => el("th", { text: h })))));
    table.append(el("tbody", {}, v.headline.map(r => el("tr", {}, el("td", { text: r.metric }), el("td", { text: r.mineral }), el("td", { text: r.bloc }), el("td", { class: "num", text: fmt(r.value, r.unit) })))));
  } else {
    $("table-title").textContent = `Risk over draws (${v.mineral})`;
    table.append(el("thead", {}, el("tr", {}, ["Outcome", "Group", "Unit", "P5", "P50", "P95", "Mean", "CVaR 95%", "Main driver"].map(h => el("th", { text: h })))));
    table.append(el("tbody", {}, v.risk.map(r => el("tr", {}, el("td", { text: r.metric }), el("td", { text: r.bloc }), el("td", { text: r.unit }),
      ...["p5", "p50", "p95", "mean", "cvar"].map(k => el("td", { class: "num", text: r[k] })), el("td", { text: r.driver })))));
  }
  document.body.dataset.runRendered = runId;
}

// ------------------------------------------------------------------------------------------- runs, compare
async function showRuns() {
  const table = $("runs-table");
  let runs;
  try { runs = await api("/api/runs"); } catch (err) { table.innerHTML = ""; table.append(el("tr", {}, el("td", { class: "error", text: err.message }))); return; }
  table.innerHTML = "";
  table.append(el("thead", {}, el("tr", {}, ["", "Run", "Scenario", "Kind", "Status", "Draws", "Created (UTC)", "Time (s)"].map(h => el("th", { text: h })))));
  table.append(el("tbody", {}, runs.map(r => el("tr", { class: "status-" + r.status, "data-run": r.run_id },
    el("td", {}, el("input", { type: "checkbox", value: r.run_id, disabled: r.status !== "complete" || r.kind !== "single" })),
    el("td", {}, el("a", { href: `#/run/${r.run_id}`, text: r.run_id })), el("td", { text: r.scenario }), el("td", { text: r.kind }),
    el("td", { text: r.status + (r.error ? ": " + r.error : "") }), el("td", { class: "num", text: `${r.done}/${r.draws}` }),
    el("td", { text: r.created.slice(0, 19) }), el("td", { class: "num", text: r.wall_time_s.toFixed(1) })))));
  if (!runs.length) table.append(el("tr", {}, el("td", { colspan: 8, class: "muted", text: "No runs stored yet: build a scenario and run it." })));
}

async function showCompare(ids, sel = {}) {
  S.compareIds = ids;
  $("cmp-message").textContent = ids.length < 2 ? "Pick two or more complete single runs on the Runs page." : "";
  if (ids.length < 2) return;
  const q = new URLSearchParams(ids.map(i => ["runs", i]));
  if (sel.mineral) q.set("mineral", sel.mineral);
  if (sel.group) q.set("group", sel.group);
  $("cmp-report").href = `/api/runs/${ids[0]}/report?` + new URLSearchParams(ids.slice(1).map(i => ["compare", i]));
  let v;
  try { v = await api(`/api/compare?${q}`); } catch (err) { $("cmp-message").textContent = err.message; $("cmp-message").className = "error"; return; }
  const s = $("cmp-mineral"); s.innerHTML = ""; for (const m of v.minerals) s.append(el("option", { value: m, text: m })); s.value = v.mineral;
  const box = $("cmp-charts");
  for (const key of ["prices", "shortfall"]) { const fig = v.figures[key]; await Plotly.react(chartDiv(box, "cmp-" + key, false), fig.data, fig.layout, PLOT_CONFIG); }
  $("cmp-message").className = "muted"; $("cmp-message").textContent = v.note ? "The runs are " + v.note + "." : "";
  const table = $("cmp-table"); table.innerHTML = "";
  table.append(el("thead", {}, el("tr", {}, ["Metric", "Mineral", "Bloc", ...v.labels, ...v.labels.slice(1).map(l => "Δ " + l)].map(h => el("th", { text: h })))));
  table.append(el("tbody", {}, v.rows.map(r => el("tr", {}, el("td", { text: r.metric }), el("td", { text: r.mineral }), el("td", { text: r.bloc }),
    ...r.cells.map(c => el("td", { class: "num", text: c })), ...r.diffs.map(c => el("td", { class: "num", text: c }))))));
  document.body.dataset.compareRendered = ids.join(",");
}

// ------------------------------------------------------------------------------------------- routing
function route() {
  const hash = location.hash || "#/build";
  const [, view, arg] = hash.match(/^#\/([a-z]+)\/?(.*)$/) || [null, "build", ""];
  document.querySelectorAll(".view").forEach(v => v.classList.remove("active"));
  document.querySelectorAll("nav a[data-nav]").forEach(a => a.classList.toggle("active", a.dataset.nav === view || (view === "run" && a.dataset.nav === "runs")));
  const section = $(`view-${view}`) || $("view-build");
  section.classList.add("active");
  if (view === "run" && arg) showRun(decodeURIComponent(arg));
  else if (view === "runs") showRuns();
  else if (view === "compare") showCompare(arg ? decodeURIComponent(arg).split(",").filter(x => x) : S.compareIds);
  else if (view === "build" && S.scenario) S.scenario && Object.keys(S.worlds).length && Object.values(document.querySelectorAll(".bloc-map")).forEach(d => Plotly.Plots.resize(d));
}

async function init() {
  const [schema, worlds, scenarios] = await Promise.all([api("/api/schema"), api("/api/worlds"), api("/api/scenarios")]);
  S.schema = schema;
  for (const w of worlds) S.worlds[w.name] = w;
  const start = $("start-from");
  for (const sc of scenarios) start.append(el("option", { value: sc.name, text: sc.name, title: sc.description }));
  const kinds = $("new-instrument");
  for (const k of instrumentKinds()) kinds.append(el("option", { value: k.kind, text: k.kind }));
  $("load-scenario").addEventListener("click", () => loadScenario(start.value));
  $("add-bloc").addEventListener("click", () => {
    const name = $("new-bloc-name").value.trim();
    if (!name || S.scenario.blocs[name]) return;
    S.scenario.blocs[name] = { members: [] }; $("new-bloc-name").value = ""; renderBlocs(); scheduleValidate();
  });
  $("add-instrument").addEventListener("click", () => { S.scenario.instruments.push({ kind: kinds.value }); renderInstruments(); scheduleValidate(); });
  $("export-yaml").addEventListener("click", async () => {
    try { const y = await api("/api/yaml/export", { method: "POST", body: { scenario: S.scenario } }); download(`${S.scenario.name || "scenario"}.yaml`, y.yaml, "text/yaml"); }
    catch (err) { $("validation").className = "badge bad"; $("validation").textContent = err.message; }
  });
  $("import-yaml").addEventListener("change", async ev => {
    const file = ev.target.files[0]; if (!file) return;
    try { const res = await api("/api/yaml/import", { method: "POST", body: { yaml: await file.text() } }); S.scenario = res.scenario; renderBuilder(); }
    catch (err) { $("validation").className = "badge bad"; $("validation").textContent = "import: " + err.message; }
    ev.target.value = "";
  });
  $("run-button").addEventListener("click", () => startRun(null));
  $("ensemble-button").addEventListener("click", () => startRun(Math.max(2, Number($("draws").value) || 20)));
  const reselect = () => renderRunView(S.runId, { mineral: $("sel-mineral").value, supplier: $("sel-supplier").value, period: $("sel-period").value });
  for (const id of ["sel-mineral", "sel-supplier", "sel-period"]) $(id).addEventListener("change", reselect);
  $("refresh-runs").addEventListener("click", showRuns);
  $("compare-selected").addEventListener("click", () => {
    const ids = [...document.querySelectorAll("#runs-table input[type=checkbox]:checked")].map(c => c.value);
    location.hash = `#/compare/${ids.join(",")}`;
  });
  const recompare = () => showCompare(S.compareIds, { mineral: $("cmp-mineral").value, group: $("cmp-group").value });
  $("cmp-mineral").addEventListener("change", recompare);
  $("cmp-group").addEventListener("change", recompare);
  S.scenario = blankScenario();
  renderBuilder();
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "1";
}

init().catch(err => { document.querySelector("main").prepend(el("p", { class: "error", text: "Could not start: " + err.message })); });
