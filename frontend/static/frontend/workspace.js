/* The interpreter's workspace: a Leaflet map of my street blocks over the campaign imagery, and the
 * split editor. Plain ES2017, no build step.
 *
 * Splits are integers in per-mille (0..1000, sum 1000) everywhere in this file; percentages with one
 * decimal exist only as text in the inputs (one decimal of a percent = 1 per-mille, so the
 * conversion is exact string <-> integer arithmetic, never floating point).
 *
 * Saves go through one serial queue: each distinct save gets a fresh request_id; a save that failed
 * on the network is retried with the SAME request_id and version (the server replays it if it had
 * been applied), and newer edits wait behind it. 409 = the split was changed elsewhere: offer reload.
 */
(function () {
  "use strict";

  const CFG = JSON.parse(document.getElementById("ws-config").textContent);
  const CLASSES = CFG.classes;                 // from lcz_model.classes via the page: never hard-coded
  const N = CLASSES.length;
  const KEYS = CLASSES.map((c) => c.key);
  const TOTAL = 1000;
  const AUTOSAVE_MS = 1500;
  const BLOCKS_MIN_ZOOM = 14;                  // below this only the campaign outline is drawn
  const MOVE_DEBOUNCE_MS = 200;
  const LOCKED = new Set(["complete", "disputed", "adjudicated"]);
  const STATUS = {
    todo: { label: "To do", color: "#ffd43b", fillOpacity: 0.08, weight: 2 },
    draft: { label: "Draft", color: "#4dabf7", fillOpacity: 0.3, weight: 2.5 },
    submitted: { label: "Submitted", color: "#69db7c", fillOpacity: 0.35, weight: 2 },
    complete: { label: "Complete", color: "#2f9e44", fillOpacity: 0.5, weight: 2 },
    disputed: { label: "Disputed", color: "#f06595", fillOpacity: 0.45, weight: 2.5 },
    adjudicated: { label: "Adjudicated", color: "#adb5bd", fillOpacity: 0.45, weight: 2 },
    unassigned: { label: "Not assigned to me", color: "#ffffff", fillOpacity: 0, weight: 1, opacity: 0.35 },
  };
  // keyboard key for a class: LCZ 1..9 -> "1".."9", LCZ 10 -> "0", LCZ A..G -> "a".."g"
  const CLASS_KEY = CLASSES.map((c) => (c.code === "10" ? "0" : c.code.toLowerCase()));
  const KEY_TO_CLASS = new Map(CLASS_KEY.map((k, i) => [k, i]));

  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid != null) node.append(kid);
    return node;
  };
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (ch) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[ch]));

  // ---------------------------------------------------------------- per-mille <-> percent text
  /** "12.5" -> 125; "" -> 0; returns {value} or {error}. At most one decimal, 0..100 %. */
  function parsePercent(text) {
    const t = String(text).trim().replace(",", ".").replace(/\s*%$/, "");
    if (t === "") return { value: 0 };
    const m = /^(\d{0,3})(?:\.(\d)?)?$/.exec(t);
    if (!m || (m[1] === "" && m[2] === undefined)) {
      if (/^\d*\.\d{2,}$/.test(t)) return { error: "one decimal at most" };
      return { error: "not a percentage" };
    }
    const value = parseInt(m[1] || "0", 10) * 10 + parseInt(m[2] || "0", 10);
    if (value > TOTAL) return { error: "at most 100 %" };
    return { value };
  }
  /** 125 -> "12.5" (integers only; no floating point). */
  function fmtPercent(pm) {
    const a = Math.abs(pm);
    return (pm < 0 ? "-" : "") + Math.floor(a / 10) + "." + (a % 10);
  }
  const fmtInput = (pm) => (pm === 0 ? "" : fmtPercent(pm));

  const { uuid4, csrfToken } = window.lczHttp;

  const url = (tpl, id) => tpl.replace("{id}", String(id));

  // ---------------------------------------------------------------- toast, banners
  let toastTimer = null;
  function toast(text, ms = 3500) {
    const t = $("#toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, ms);
  }
  function showErrors(errors) {
    const box = $("#ed-errors");
    if (!errors) { box.hidden = true; box.textContent = ""; return; }
    box.textContent = "";
    const list = el("ul");
    for (const [field, msgs] of Object.entries(errors)) {
      const idx = KEYS.indexOf(field);
      const name = idx >= 0 ? `LCZ ${CLASSES[idx].code}` : field === "detail" ? "" : field;
      list.append(el("li", { text: (name ? name + ": " : "") + [].concat(msgs).join(" ") }));
    }
    box.append(el("strong", { text: "Not saved." }), list);
    box.hidden = false;
  }

  // ---------------------------------------------------------------- editor state
  const ed = {
    open: false,
    a: null,                // the assignment (API shape) being edited
    id: null,               // its id
    blockId: null,
    pm: new Array(N).fill(0),
    bad: new Map(),         // class index -> message, for inputs whose text does not parse
    confidence: null,
    flags: new Set(),
    comment: "",
    seq: 0,                 // edit counter (global, never reset: queued saves of earlier visits stay older)
    savedSeq: 0,            // edits up to here are saved on the server
    submitted: false,
    conflict: false,
    locked: false,
    cls: null,              // the chosen class (keyboard "r" target)
  };
  const versions = new Map();   // assignment id -> last version known from the server
  let seqCounter = 0;
  let openToken = 0;

  const total = () => ed.pm.reduce((s, v) => s + v, 0);
  const canSubmit = () => ed.open && !ed.locked && !ed.conflict && ed.bad.size === 0 && total() === TOTAL;
  const draftable = () => ed.open && !ed.locked && !ed.conflict && !ed.submitted && ed.bad.size === 0 && total() <= TOTAL;

  function snapshot() {
    const split = {};
    KEYS.forEach((k, i) => { split[k] = ed.pm[i]; });
    return { split, confidence: ed.confidence, flags: CFG.flags.map((f) => f.key).filter((k) => ed.flags.has(k)),
             comment: ed.comment };
  }

  // ---------------------------------------------------------------- save queue
  const queue = [];          // {aid, blockId, body, submit, seq, requestId, version, sent, resolve, promise}
  let pumping = false;
  let offline = false;
  let loggedOut = false;
  let retryDelay = 1000;
  let autosaveTimer = null;

  function enqueue(aid, blockId, body, submit, seq) {
    if (!submit) {
      // an unsent draft of the same assignment is simply replaced by the newer one
      const waiting = queue.find((q) => q.aid === aid && !q.sent && !q.submit);
      if (waiting) { waiting.body = body; waiting.seq = seq; return waiting.promise; }
    }
    const item = { aid, blockId, body, submit, seq, requestId: uuid4(), version: null, sent: false };
    item.promise = new Promise((resolve) => { item.resolve = resolve; });
    queue.push(item);
    pump();
    renderSaveState();
    return item.promise;
  }

  const pendingFor = (aid) => queue.filter((q) => q.aid === aid);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function pump() {
    if (pumping) return;
    pumping = true;
    try {
      while (queue.length) {
        const item = queue[0];
        if (!item.sent) {                      // frozen from the first send on: a retry is the same request
          item.version = versions.has(item.aid) ? versions.get(item.aid) : 0;
          item.sent = true;
          item.payload = JSON.stringify({ request_id: item.requestId, version: item.version,
                                          submit: item.submit, ...item.body });
        }
        renderSaveState();
        let res = null;
        try {
          res = await fetch(url(CFG.api.annotation, item.aid), {
            method: "PUT", credentials: "same-origin", body: item.payload,
            headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
          });
        } catch (err) {
          res = null;
        }
        if (res === null || res.status >= 500 || res.status === 429 || res.status === 401 || res.status === 403) {
          // network down, server trouble, or logged out: keep the request, retry it unchanged
          offline = res === null ? "offline" : res.status >= 500 || res.status === 429 ? "server" : false;
          loggedOut = !!res && (res.status === 401 || res.status === 403);
          renderSaveState();
          await sleep(retryDelay);
          retryDelay = Math.min(retryDelay * 2, 30000);
          continue;
        }
        offline = loggedOut = false;
        retryDelay = 1000;
        queue.shift();
        let data = null;
        try { data = await res.json(); } catch (err) { data = null; }
        if (res.ok) {
          versions.set(item.aid, data.version);
          onSaved(item, data);
          item.resolve({ ok: true, annotation: data });
        } else if (res.status === 409) {
          for (const other of pendingFor(item.aid)) {            // all built on a stale version
            queue.splice(queue.indexOf(other), 1);
            other.resolve({ ok: false, conflict: true });
          }
          if (item.aid === ed.id) { ed.conflict = true; renderEditorState(); }
          else toast("A saved draft of another block was changed elsewhere; open it to reload.");
          item.resolve({ ok: false, conflict: true, current: data && data.current });
        } else {
          if (item.aid === ed.id) showErrors(data && typeof data === "object" ? data : { detail: `HTTP ${res.status}` });
          else toast(`A save was refused (HTTP ${res.status}).`);
          item.resolve({ ok: false, errors: data });
        }
        renderSaveState();
      }
    } finally {
      pumping = false;
      renderSaveState();
    }
  }

  function onSaved(item, ann) {
    const status = ann.submitted ? "submitted" : "draft";
    setBlockStatus(item.blockId, status);
    if (item.aid === ed.id) {
      ed.savedSeq = Math.max(ed.savedSeq, item.seq);
      ed.submitted = ann.submitted;
      showErrors(null);
      renderEditorState();
    }
    refreshProgressSoon();
  }

  function scheduleAutosave() {
    clearTimeout(autosaveTimer);
    autosaveTimer = null;
    if (draftable()) autosaveTimer = setTimeout(saveDraftNow, AUTOSAVE_MS);
    renderSaveState();
  }

  /** Send the current edits as a draft now (if there are any and they can be a draft). */
  function saveDraftNow() {
    clearTimeout(autosaveTimer);
    autosaveTimer = null;
    if (!ed.open || ed.seq === ed.savedSeq || !draftable()) { renderSaveState(); return null; }
    if (pendingFor(ed.id).some((q) => q.seq >= ed.seq)) return null;
    return enqueue(ed.id, ed.blockId, snapshot(), false, ed.seq);
  }

  function saveStateText() {
    if (loggedOut) return { text: "Logged out: log in again in another tab, will retry", cls: "bad" };
    if (offline === "offline") return { text: "Offline, will retry", cls: "bad" };
    if (offline) return { text: "Server busy, will retry", cls: "bad" };
    if (ed.open) {
      if (ed.conflict) return { text: "Not saved: changed elsewhere", cls: "bad" };
      if (pendingFor(ed.id).length) return { text: "Saving…", cls: "busy" };
      if (ed.seq !== ed.savedSeq) {
        if (ed.locked) return { text: "Read only", cls: "" };
        if (ed.bad.size) return { text: "Not saved: fix the marked value", cls: "bad" };
        if (ed.submitted) return { text: "Changed: submit again to keep", cls: "warn" };
        if (total() > TOTAL) return { text: "Not saved: over 100 %", cls: "bad" };
        return { text: "Unsaved changes", cls: "busy" };
      }
      if (ed.submitted) return { text: "Submitted", cls: "ok" };
      if (versions.get(ed.id)) return { text: "Saved", cls: "ok" };
      return { text: "", cls: "" };
    }
    if (queue.length) return { text: "Saving…", cls: "busy" };
    return { text: "", cls: "" };
  }
  function renderSaveState() {
    const s = saveStateText();
    for (const node of [$("#save-state"), $("#ed-save-state")]) {
      node.textContent = s.text;
      node.dataset.state = s.cls;
    }
  }

  window.addEventListener("beforeunload", (e) => {
    saveDraftNow();
    if (queue.length) { e.preventDefault(); e.returnValue = ""; }
  });
  document.addEventListener("visibilitychange", () => { if (document.hidden) saveDraftNow(); });

  // ---------------------------------------------------------------- the map
  // one canvas for every block outline: no DOM node per feature, so 20,000 blocks stay smooth
  const renderer = L.canvas({ padding: 0.3, tolerance: 3 });
  const map = L.map("map", { renderer, preferCanvas: true, zoomControl: true, maxZoom: 22, keyboard: false });
  map.attributionControl.setPrefix(false);
  map.attributionControl.addAttribution("Blocks © OpenStreetMap contributors (ODbL)");

  for (const scene of CFG.campaign.scenes) addScene(scene);

  function addScene(scene) {
    const attribution = [
      scene.attribution || CFG.campaign.imagery_attribution,
      "Licence: " + (scene.licence || CFG.campaign.imagery_licence || "not stated"),
    ].filter(Boolean).map(esc).join(" · ") + (scene.synthetic ? " (synthetic imagery)" : "");
    const tilejson = scene.tiles.replace(/\{z\}.*$/, "tilejson.json");
    window.lczImagery.addImagery(map, scene.tiles, tilejson, { attribution, crossOrigin: false });
  }

  const campBounds = CFG.campaign.bounds
    ? L.latLngBounds([CFG.campaign.bounds[1], CFG.campaign.bounds[0]], [CFG.campaign.bounds[3], CFG.campaign.bounds[2]])
    : null;
  if (campBounds) {
    L.rectangle(campBounds, { interactive: false, fill: false, color: "#ffffff", weight: 1,
                              dashArray: "6 6", opacity: 0.6 }).addTo(map);
  }

  function blockStyle(feature) {
    const s = STATUS[feature.properties.status] || STATUS.todo;
    return { color: s.color, weight: s.weight, opacity: s.opacity == null ? 0.95 : s.opacity,
             fillColor: s.color, fillOpacity: s.fillOpacity };
  }
  const blockLayers = new Map();     // block id -> Leaflet layer (canvas path, no DOM per feature)
  const blocks = L.geoJSON(null, {
    style: blockStyle,
    onEachFeature: (f, layer) => { blockLayers.set(f.id, layer); },
  }).addTo(map);
  blocks.on("click", (e) => onBlockClick(e.layer.feature));
  // the open block: a white line over a dark halo reads on any imagery and any status colour
  // (its own pane and canvas above the blocks, so reloading blocks never paints over it)
  const selectedPane = map.createPane("selected");
  selectedPane.style.zIndex = 450;
  selectedPane.style.pointerEvents = "none";         // clicks go through to the blocks below
  const selectedRenderer = L.canvas({ pane: "selected", padding: 0.3 });
  const highlight = L.layerGroup().addTo(map);
  function highlightBlock(geometry) {
    highlight.clearLayers();
    if (!geometry) return;
    const f = { type: "Feature", geometry, properties: {} };
    for (const style of [{ color: "#000", weight: 7, opacity: 0.55 }, { color: "#fff", weight: 3, opacity: 1 }]) {
      L.geoJSON(f, { style: { ...style, fill: false, renderer: selectedRenderer, interactive: false },
                     interactive: false }).addTo(highlight);
    }
  }

  let moving = false;
  map.on("movestart", () => { moving = true; });
  map.on("moveend", () => { moving = false; });
  let loadedZoom = null;
  let blocksCtrl = null;
  let moveTimer = null;
  map.on("moveend", () => { clearTimeout(moveTimer); moveTimer = setTimeout(loadBlocks, MOVE_DEBOUNCE_MS); });

  async function loadBlocks() {
    const z = Math.round(map.getZoom());
    zoomHint.update(z);
    if (blocksCtrl) blocksCtrl.abort();
    if (z < BLOCKS_MIN_ZOOM) {
      blocks.clearLayers(); blockLayers.clear(); loadedZoom = null; legend.update();
      return;
    }
    const b = map.getBounds().pad(0.2);
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    const bbox = [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -85.06, 85.06),
                  clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -85.06, 85.06)].map((v) => v.toFixed(6)).join(",");
    const ctrl = new AbortController();
    blocksCtrl = ctrl;
    const started = performance.now();
    let fc;
    try {
      const res = await fetch(`${CFG.api.blocks}?bbox=${bbox}&zoom=${z}`, {
        credentials: "same-origin", signal: ctrl.signal, headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      fc = await res.json();
    } catch (err) {
      if (err.name === "AbortError") return;
      toast("Could not load the blocks here; retrying…");
      clearTimeout(moveTimer);
      moveTimer = setTimeout(loadBlocks, 5000);
      return;
    }
    if (ctrl !== blocksCtrl) return;
    if (loadedZoom !== z) { blocks.clearLayers(); blockLayers.clear(); loadedZoom = z; }  // new simplification
    const seen = new Set();
    for (const f of fc.features) {
      seen.add(f.id);
      const have = blockLayers.get(f.id);
      if (have) {
        if (have.feature.properties.status !== f.properties.status && !newerLocally(f.id, started)) {
          have.feature.properties.status = f.properties.status;
          have.setStyle(blockStyle(have.feature));
        }
        continue;
      }
      if (newerLocally(f.id, started)) f.properties.status = localStatus.get(f.id).status;
      blocks.addData(f);
    }
    for (const [id, layer] of blockLayers) {
      if (!seen.has(id) && id !== ed.blockId) { blocks.removeLayer(layer); blockLayers.delete(id); }
    }
    legend.update();
  }

  // statuses saved here after a blocks request had started: that answer is older than they are
  const localStatus = new Map();     // block id -> {status, at}
  const newerLocally = (id, started) => localStatus.has(id) && localStatus.get(id).at >= started;
  function setBlockStatus(blockId, status) {
    localStatus.set(blockId, { status, at: performance.now() });
    const layer = blockLayers.get(blockId);
    if (layer && !LOCKED.has(layer.feature.properties.status)) {
      layer.feature.properties.status = status;
      layer.setStyle(blockStyle(layer.feature));
      legend.update();
    }
  }

  const legend = L.control({ position: "bottomleft" });
  legend.onAdd = function () {
    this._div = L.DomUtil.create("div", "legend");
    L.DomEvent.disableClickPropagation(this._div);
    return this._div;
  };
  legend.update = function () {
    if (!this._div) return;
    const counts = {};
    for (const layer of blockLayers.values()) {
      const s = layer.feature.properties.status;
      counts[s] = (counts[s] || 0) + 1;
    }
    this._div.innerHTML = '<div class="legend-title">My blocks here</div>' + Object.entries(STATUS).map(([k, s]) =>
      `<div class="legend-row" data-status="${k}"><i style="border-color:${s.color};background:${s.fillOpacity ? s.color : "transparent"};` +
      `opacity:${s.opacity == null ? 1 : Math.max(s.opacity, 0.5)}"></i>${esc(s.label)}<span>${counts[k] || 0}</span></div>`).join("");
  };
  legend.addTo(map);
  legend.update();

  const zoomHint = L.control({ position: "topright" });
  zoomHint.onAdd = function () { this._div = L.DomUtil.create("div", "zoom-hint"); this._div.hidden = true; return this._div; };
  zoomHint.update = function (z) {
    if (!this._div) return;
    this._div.hidden = z >= BLOCKS_MIN_ZOOM;
    this._div.textContent = "Zoom in to see the blocks";
  };
  zoomHint.addTo(map);

  function onBlockClick(feature) {
    const p = feature.properties;
    if (!p.assignment) { toast(`Block ${p.block_key} is not assigned to you.`); return; }
    openAssignment(p.assignment, { fly: false });
  }

  function bboxBounds(bbox) { return L.latLngBounds([bbox[1], bbox[0]], [bbox[3], bbox[2]]); }
  /** Show the block: the smallest pan that brings it fully into view, or a flight when it is far. */
  function showBlock(a, fly) {
    highlightBlock(a.block.geometry);
    const bounds = bboxBounds(a.block.bbox);
    const size = map.getSize();
    const pad = 40;
    const nw = map.latLngToContainerPoint(bounds.getNorthWest());
    const se = map.latLngToContainerPoint(bounds.getSouthEast());
    const fits = se.x - nw.x + 2 * pad <= size.x && se.y - nw.y + 2 * pad <= size.y;
    const near = map.getBounds().pad(1).intersects(bounds);
    const target = Math.max(BLOCKS_MIN_ZOOM, Math.min(19, map.getBoundsZoom(bounds.pad(1))));
    const tooSmall = fly && map.getZoom() < target - 1;     // "next" brings the block close enough to judge
    if (fits && near && !tooSmall && map.getZoom() >= BLOCKS_MIN_ZOOM) {
      const dx = nw.x < pad ? nw.x - pad : se.x > size.x - pad ? se.x - (size.x - pad) : 0;
      const dy = nw.y < pad ? nw.y - pad : se.y > size.y - pad ? se.y - (size.y - pad) : 0;
      if (dx || dy) map.panBy([dx, dy], { duration: 0.3 });
      return;
    }
    if (fly) map.flyTo(bounds.getCenter(), target, { duration: 0.8 });
    else map.setView(bounds.getCenter(), target);
  }

  // ---------------------------------------------------------------- progress
  let progressTimer = null;
  function refreshProgressSoon() { clearTimeout(progressTimer); progressTimer = setTimeout(refreshProgress, 300); }
  async function refreshProgress() {
    try {
      const res = await fetch(CFG.api.progress, { credentials: "same-origin" });
      if (!res.ok) return;
      const p = await res.json();
      const node = $("#progress");
      const pct = p.assigned ? (100 * p.submitted) / p.assigned : 0;
      node.querySelector(".fill").style.width = pct + "%";
      node.querySelector(".label").textContent =
        `${p.submitted} / ${p.assigned} done` + (p.draft ? ` · ${p.draft} draft${p.draft > 1 ? "s" : ""}` : "");
      node.setAttribute("aria-valuenow", String(p.submitted));
      node.setAttribute("aria-valuemax", String(p.assigned));
      node.title = `${p.submitted} submitted, ${p.draft} drafts, ${p.todo} to do, of ${p.assigned} assigned to you`;
    } catch (err) { /* offline: the next save refreshes it */ }
  }

  // ---------------------------------------------------------------- the editor
  const rows = [];
  function buildEditor() {
    const box = $("#classes");
    for (const group of ["built", "natural"]) {
      box.append(el("h3", { class: "group", text: group === "built" ? "Built" : "Natural" }));
      CLASSES.forEach((c, i) => {
        if (c.group !== group) return;
        const input = el("input", { type: "text", inputmode: "decimal", class: "pct", id: `pct-${c.key}`,
                                    name: c.key, placeholder: "0", "aria-label": `LCZ ${c.code} ${c.name}, percent`,
                                    "data-index": i, maxlength: 5 });
        const slider = el("input", { type: "range", min: 0, max: TOTAL, step: 1, value: 0, class: "slider",
                                     "aria-label": `LCZ ${c.code} ${c.name}, slider`, tabindex: -1 });
        const rest = el("button", { type: "button", class: "rest", title: "Put the remainder here (r)",
                                    "aria-label": `Put the remainder into LCZ ${c.code}`, tabindex: -1, text: "+rest" });
        const row = el("div", { class: "cls", "data-key": c.key, title: `LCZ ${c.code} ${c.name}: ${c.description}` },
          el("kbd", { class: "key", text: CLASS_KEY[i] }),
          el("span", { class: "swatch", style: `background:${c.colour}` }),
          el("label", { for: input.id, class: "name" }, el("b", { text: c.code }), " " + c.name),
          slider, input, el("span", { class: "unit", text: "%" }), rest);
        input.addEventListener("input", () => onPctInput(i));
        input.addEventListener("focus", () => chooseClass(i, false));
        input.addEventListener("blur", () => { if (!ed.bad.has(i)) input.value = fmtInput(ed.pm[i]); });
        slider.addEventListener("input", () => { setValue(i, parseInt(slider.value, 10)); });
        rest.addEventListener("click", () => { putRemainder(i); });
        box.append(row);
        rows[i] = { row, input, slider, rest };
      });
    }
    const conf = $("#confidence");
    for (let v = 1; v <= 5; v++) {
      const input = el("input", { type: "radio", name: "confidence", value: v, id: `conf-${v}` });
      input.addEventListener("change", () => { ed.confidence = v; changed(); });
      input.addEventListener("click", () => {                    // clicking the chosen one clears it
        if (ed.confidence === v) { input.checked = false; ed.confidence = null; changed(); }
      });
      conf.append(el("label", { for: `conf-${v}`, class: "pill" }, input, el("span", { text: String(v) })));
    }
    conf.append(el("span", { class: "muted hint", text: "1 unsure … 5 certain" }));
    const flags = $("#flags");
    for (const f of CFG.flags) {
      const input = el("input", { type: "checkbox", name: "flags", value: f.key, id: `flag-${f.key}` });
      input.addEventListener("change", () => { if (input.checked) ed.flags.add(f.key); else ed.flags.delete(f.key); changed(); });
      flags.append(el("label", { for: input.id, class: "flag" }, input, " " + f.label));
    }
    $("#comment").addEventListener("input", (e) => { ed.comment = e.target.value; changed(); });
    $("#split-form").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
    $("#ed-close").addEventListener("click", () => closeEditor());
    $("#ed-next").addEventListener("click", () => goNext());
    $("#next-btn").addEventListener("click", () => goNext());
    $("#reload-btn").addEventListener("click", () => reloadSaved());
    $("#help-btn").addEventListener("click", () => toggleHelp());
    $("#help-close").addEventListener("click", () => toggleHelp(false));
    $("#help").addEventListener("click", (e) => { if (e.target.id === "help") toggleHelp(false); });
  }

  function onPctInput(i) {
    const r = parsePercent(rows[i].input.value);
    if (r.error) {
      ed.bad.set(i, r.error);
    } else {
      ed.bad.delete(i);
      ed.pm[i] = r.value;
      rows[i].slider.value = String(r.value);
    }
    changed();
  }

  function setValue(i, pm) {
    pm = Math.max(0, Math.min(TOTAL, pm | 0));
    ed.pm[i] = pm;
    ed.bad.delete(i);
    rows[i].slider.value = String(pm);
    rows[i].input.value = fmtInput(pm);
    changed();
  }

  function putRemainder(i) {
    if (i == null || ed.locked) return;
    if (ed.bad.has(i)) ed.bad.delete(i);
    const others = total() - ed.pm[i];
    setValue(i, TOTAL - others);            // clamped to 0..1000
    chooseClass(i, true);
  }

  function chooseClass(i, focus) {
    ed.cls = i;
    rows.forEach((r, k) => r.row.classList.toggle("chosen", k === i));
    if (focus) {
      const input = rows[i].input;
      if (document.activeElement !== input) input.focus({ preventScroll: false });
      input.select();
      rows[i].row.scrollIntoView({ block: "nearest" });
    }
  }

  function changed() {
    ed.seq = ++seqCounter;
    renderTotals();
    showErrors(null);
    if (!ed.submitted) scheduleAutosave();
    else renderSaveState();
  }

  function renderTotals() {
    const t = total();
    $("#total").textContent = fmtPercent(t) + " %";
    const diff = $("#diff");
    if (ed.bad.size) {
      const [i, msg] = ed.bad.entries().next().value;
      diff.textContent = `LCZ ${CLASSES[i].code}: ${msg}`;
      diff.dataset.state = "bad";
    } else if (t === TOTAL) {
      diff.textContent = "✓ complete";
      diff.dataset.state = "ok";
    } else if (t < TOTAL) {
      diff.textContent = `${fmtPercent(TOTAL - t)} % left`;
      diff.dataset.state = "left";
    } else {
      diff.textContent = `${fmtPercent(t - TOTAL)} % over`;
      diff.dataset.state = "bad";
    }
    rows.forEach((r, i) => {
      r.row.classList.toggle("bad", ed.bad.has(i));
      r.row.classList.toggle("set", ed.pm[i] > 0);
      r.rest.title = t - ed.pm[i] < TOTAL ? `Put the remainder here: ${fmtPercent(TOTAL - (t - ed.pm[i]))} % (r)` : "Put the remainder here (r)";
    });
    const stack = $("#stack");
    stack.textContent = "";
    CLASSES.forEach((c, i) => {
      if (ed.pm[i] > 0 && !ed.bad.has(i)) {
        stack.append(el("span", { style: `width:${Math.min(ed.pm[i], TOTAL) / 10}%;background:${c.colour}`,
                                  title: `LCZ ${c.code} ${fmtPercent(ed.pm[i])} %` }));
      }
    });
    $("#submit-btn").disabled = !canSubmit();
    $("#submit-btn").textContent = ed.submitted ? "Submit again ⏎" : "Submit ⏎";
  }

  function renderEditorState() {
    $("#conflict").hidden = !ed.conflict;
    $("#ed-readonly").hidden = !ed.locked;
    const status = ed.locked ? lockedStatus() : ed.submitted ? "submitted" : versions.get(ed.id) ? "draft" : "todo";
    const badge = $("#ed-status");
    badge.textContent = (STATUS[status] || STATUS.todo).label;
    badge.dataset.status = status;
    for (const r of rows) { r.input.disabled = r.slider.disabled = r.rest.disabled = ed.locked; }
    for (const node of document.querySelectorAll("#confidence input, #flags input, #comment")) node.disabled = ed.locked;
    renderTotals();
    renderSaveState();
  }
  function lockedStatus() {
    const layer = blockLayers.get(ed.blockId);
    return layer ? layer.feature.properties.status : "complete";
  }

  function fillEditor(a, source) {
    ed.a = a;
    ed.id = a.id;
    ed.blockId = a.block.id;
    ed.pm = source ? KEYS.map((k) => source.split[k] | 0) : new Array(N).fill(0);
    ed.bad = new Map();
    ed.confidence = source ? source.confidence : null;
    ed.flags = new Set(source ? source.flags || [] : []);
    ed.comment = source ? source.comment || "" : "";
    ed.seq = ed.savedSeq = ++seqCounter;
    ed.submitted = !!(a.annotation && a.annotation.submitted);
    ed.conflict = false;
    const layer = blockLayers.get(ed.blockId);
    ed.locked = !!(ed.submitted && layer && LOCKED.has(layer.feature.properties.status));
    rows.forEach((r, i) => { r.input.value = fmtInput(ed.pm[i]); r.slider.value = String(ed.pm[i]); });
    for (const input of document.querySelectorAll("#confidence input")) input.checked = Number(input.value) === ed.confidence;
    for (const input of document.querySelectorAll("#flags input")) input.checked = ed.flags.has(input.value);
    $("#comment").value = ed.comment;
    $("#ed-block").textContent = `Block ${a.block.block_key}`;
    $("#ed-area").textContent = `${Math.round(a.block.area_m2).toLocaleString()} m² · assignment ${a.id}`;
    const note = $("#ed-suggestion");
    note.hidden = !a.suggestion;
    note.textContent = a.suggestion
      ? `Review mode: started from the model's split (model ${a.suggestion.model_version}). Accept it or edit it.`
      : "";
    showErrors(null);
    chooseClass(null, false);
    renderEditorState();
  }

  async function fetchAssignment(aid) {
    const res = await fetch(url(CFG.api.assignment, aid), { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(res.status === 404 ? "That block is not assigned to you." : `HTTP ${res.status}`);
    return res.json();
  }

  async function openAssignment(aid, { fly = true, data = null } = {}) {
    if (ed.open && ed.id === aid) { $("#editor").focus(); return; }
    const token = ++openToken;
    saveDraftNow();                                 // leaving a block never drops its edits
    let a = data;
    try {
      if (!a) a = await fetchAssignment(aid);
    } catch (err) {
      toast(err instanceof TypeError ? "Offline: cannot open that block now." : err.message);
      if (token === openToken) history.replaceState(null, "", ed.open ? `#a=${ed.id}` : location.pathname + location.search);
      return;
    }
    if (token !== openToken) return;                // a later click won
    openEditorWith(a, fly);
  }

  function openEditorWith(a, fly) {
    const pending = pendingFor(a.id);
    if (!pending.length) versions.set(a.id, a.annotation ? a.annotation.version : 0);
    // edits still in the save queue are newer than what the server sent
    // assisted rounds: a block not yet touched opens on the model's split (blind rounds get none)
    const suggested = a.suggestion ? { split: a.suggestion.split, confidence: null, flags: [], comment: "" } : null;
    const source = pending.length ? pending[pending.length - 1].body : (a.annotation || suggested);
    const wasOpen = ed.open;
    ed.open = true;
    $("#editor").hidden = false;
    fillEditor(a, source);
    if (!wasOpen) map.invalidateSize({ pan: false });
    showBlock(a, fly);
    history.replaceState(null, "", `#a=${a.id}`);
    $("#editor").focus({ preventScroll: true });
  }

  function closeEditor() {
    saveDraftNow();
    openToken++;
    ed.open = false;
    ed.id = ed.blockId = ed.a = null;
    $("#editor").hidden = true;
    highlight.clearLayers();
    map.invalidateSize({ pan: false });
    history.replaceState(null, "", location.pathname + location.search);
    renderSaveState();
    map.getContainer().focus({ preventScroll: true });
  }

  async function reloadSaved() {
    if (!ed.id) return;
    const aid = ed.id;
    try {
      const a = await fetchAssignment(aid);
      versions.set(aid, a.annotation ? a.annotation.version : 0);
      if (ed.id === aid) {
        fillEditor(a, a.annotation);
        $("#editor").focus({ preventScroll: true });
        toast("Reloaded the saved version.");
      }
    } catch (err) {
      toast("Could not reload: " + err.message);
    }
  }

  let nextBusy = false;
  async function goNext(afterBlockId) {
    if (nextBusy) return;
    nextBusy = true;
    try {
      const after = afterBlockId != null ? afterBlockId : ed.blockId;
      saveDraftNow();
      // a draft queued for the block we are leaving must reach the server first, or "next" (which
      // resumes drafts first) would not know about it
      if (ed.id != null && pendingFor(ed.id).length) {
        if (offline) toast("Waiting for the connection to save this draft before moving on…");
        await Promise.all(pendingFor(ed.id).map((q) => q.promise));
      }
      const res = await fetch(CFG.api.next + (after != null ? `?after=${after}` : ""), {
        credentials: "same-origin", headers: { Accept: "application/json" } });
      if (res.status === 204) {
        toast("All your blocks are submitted. Thank you!", 6000);
        if (ed.open && ed.submitted) closeEditor();
        return;
      }
      if (!res.ok) { toast(`Could not get the next block (HTTP ${res.status}).`); return; }
      let a = await res.json();
      if (ed.open && a.id === ed.id) {
        // "next" resumes drafts first, so it can hand back the block we are on: take the next
        // of my open blocks on the map instead
        const other = nextLoadedBlock(ed.blockId);
        if (!other) { toast("This is your only open block here: submit it, or pan to find another."); return; }
        await openAssignment(other, { fly: true });
        return;
      }
      openAssignment(a.id, { fly: true, data: a });
    } catch (err) {
      toast("Offline: cannot fetch the next block now.");
    } finally {
      nextBusy = false;
    }
  }
  function nextLoadedBlock(afterId) {
    const open = [...blockLayers.values()].map((l) => l.feature)
      .filter((f) => f.properties.assignment && (f.properties.status === "todo" || f.properties.status === "draft"))
      .sort((x, y) => x.id - y.id);
    const later = open.find((f) => f.id > afterId) || open.find((f) => f.id !== afterId);
    return later ? later.properties.assignment : null;
  }

  let submitting = false;
  async function submit() {
    if (!ed.open || submitting) return;
    if (!canSubmit()) {
      const diff = $("#diff");
      diff.classList.remove("flash"); void diff.offsetWidth; diff.classList.add("flash");
      return;
    }
    submitting = true;
    $("#submit-btn").disabled = true;
    clearTimeout(autosaveTimer);
    autosaveTimer = null;
    const aid = ed.id;
    const blockId = ed.blockId;
    try {
      const r = await enqueue(aid, blockId, snapshot(), true, ed.seq);
      if (r.ok && ed.id === aid) {
        refreshProgress();
        toast("Submitted. Opening your next block…", 2000);
        await goNext(blockId);
      }
    } finally {
      submitting = false;
      if (ed.open) renderTotals();
    }
  }

  // ---------------------------------------------------------------- keyboard
  function toggleHelp(show) {
    const help = $("#help");
    const on = show == null ? help.hidden : show;
    help.hidden = !on;
    if (on) $("#help-close").focus();
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const t = e.target;
    const helpOpen = !$("#help").hidden;
    if (helpOpen) {
      if (e.key === "Escape" || e.key === "?") { e.preventDefault(); toggleHelp(false); }
      return;
    }
    const inPct = t.classList && t.classList.contains("pct");
    const inText = !inPct && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && /^(text|search|password|email)$/.test(t.type)));
    const onControl = t.tagName === "INPUT" && !inPct && !inText;   // slider, radio, checkbox

    if (e.key === "Escape") {
      e.preventDefault();
      if (ed.open && (inPct || inText || onControl || t.tagName === "BUTTON")) {
        t.blur();
        $("#editor").focus({ preventScroll: true });
      } else if (ed.open) {
        closeEditor();
      }
      return;
    }
    if (inText) return;                           // the comment: plain typing
    if (e.key === "Enter") {
      if (t.tagName === "BUTTON" || t.tagName === "A") return;   // let buttons be pressed
      if (ed.open) { e.preventDefault(); submit(); }
      return;
    }
    if (inPct) {
      const i = Number(t.dataset.index);
      if (e.key === "ArrowUp" || e.key === "ArrowDown") {
        e.preventDefault();
        const step = (e.shiftKey ? 1 : 10) * (e.key === "ArrowUp" ? 1 : -1);
        setValue(i, (ed.bad.has(i) ? 0 : ed.pm[i]) + step);
        t.select();
        return;
      }
      if (e.key.length === 1 && !/[0-9.,]/.test(e.key) && !(e.shiftKey && /^Digit[1-5]$/.test(e.code))) {
        e.preventDefault();                       // nothing but digits and a decimal mark is typed here
        const k = e.key.toLowerCase();
        if (k === "r") putRemainder(i);
        else if (KEY_TO_CLASS.has(k)) chooseClass(KEY_TO_CLASS.get(k), true);
        else if (k === "n") goNext();
        else if (k === "?") toggleHelp(true);
        return;
      }
      if (!(e.shiftKey && /^Digit[1-5]$/.test(e.code))) return;   // digits, dot, editing keys: typing
    }
    if (e.shiftKey && /^Digit[1-5]$/.test(e.code) && ed.open && !ed.locked) {
      e.preventDefault();
      const v = Number(e.code.slice(5));
      const radio = document.getElementById(`conf-${v}`);
      radio.checked = true;
      ed.confidence = v;
      changed();
      return;
    }
    if (e.key === "?") { e.preventDefault(); toggleHelp(true); return; }
    if ((e.key === "ArrowRight" && !onControl) || e.key === "n") { e.preventDefault(); goNext(); return; }
    if (!ed.open || ed.locked) return;
    const k = e.key.toLowerCase();
    if (e.key.length === 1 && KEY_TO_CLASS.has(k) && !e.shiftKey) {
      e.preventDefault();
      chooseClass(KEY_TO_CLASS.get(k), true);
    } else if (k === "r") {
      e.preventDefault();
      putRemainder(ed.cls);
    }
  });

  // ---------------------------------------------------------------- start
  buildEditor();
  refreshProgress();
  const fromHash = /^#a=(\d+)$/.exec(location.hash);
  if (campBounds) map.fitBounds(campBounds.pad(0.05), { maxZoom: 18 });
  else map.setView([0, 0], 2);
  if (fromHash) {
    fetchAssignment(Number(fromHash[1]))
      .then((a) => { map.fitBounds(bboxBounds(a.block.bbox).pad(0.6), { maxZoom: 19 }); openEditorWith(a, false); })
      .catch(() => history.replaceState(null, "", location.pathname));
  }
  loadBlocks();
  window.addEventListener("hashchange", () => {
    const m = /^#a=(\d+)$/.exec(location.hash);
    if (m && Number(m[1]) !== ed.id) openAssignment(Number(m[1]), { fly: true });
  });

  // a handle for people poking in the console, and for the browser tests
  window.lczWorkspace = {
    map, ed, queue, parsePercent, fmtPercent, blockLayers, openAssignment,
    get moving() { return moving; },
  };
})();
