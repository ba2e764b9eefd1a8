/* The coordinator's dashboard map and the reviewer's adjudication page.
 *
 * Both pages carry their configuration in a json_script element (#dash-config, #review-config);
 * Leaflet comes from django-leaflet's static files. Class order and colours come from the server
 * (lcz_model.classes), never from here.
 */
(function () {
  "use strict";

  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  function readConfig(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  /** Imagery tile layers of the campaign's scenes, under everything else (imagery.js). */
  function addScenes(map, scenes) {
    for (const scene of scenes) {
      window.lczImagery.addImagery(map, scene.tiles, scene.tilejson, { attribution: esc(scene.attribution) });
    }
  }

  function newMap(id) {
    const map = L.map(id, { preferCanvas: true, maxZoom: 22, zoomSnap: 0.25 });
    map.attributionControl.setPrefix(false);
    map.attributionControl.addAttribution("Blocks © OpenStreetMap contributors (ODbL)");
    return map;
  }

  // ---------------------------------------------------------------------------------------------
  // dashboard: blocks coloured by agreement
  // ---------------------------------------------------------------------------------------------

  const RAMP = ["#1a9850", "#a6d96a", "#fee08b", "#fc8d59", "#d73027"];
  const OUTLINE = {
    disputed: { color: "#d6007a", weight: 3.5, dashArray: null, label: "disputed (awaits a reviewer)" },
    adjudicated: { color: "#6f42c1", weight: 2.5, dashArray: "5 4", label: "adjudicated" },
    complete: { color: "#ffffff", weight: 1, dashArray: null, label: "complete (consensus)" },
  };

  /** TV -> colour: green at 0, yellow at the dispute threshold, red at twice the threshold and above. */
  function rampStops(threshold) {
    return [0, threshold / 2, threshold, threshold * 1.5, threshold * 2];
  }

  function hex(c) { return [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)); }

  function tvColour(tv, threshold) {
    if (tv == null || Number.isNaN(tv)) return "#8c959f";
    const stops = rampStops(threshold);
    if (tv <= stops[0]) return RAMP[0];
    for (let i = 1; i < stops.length; i++) {
      if (tv <= stops[i]) {
        const f = (tv - stops[i - 1]) / (stops[i] - stops[i - 1]);
        const a = hex(RAMP[i - 1]), b = hex(RAMP[i]);
        return "#" + a.map((v, k) => Math.round(v + f * (b[k] - v)).toString(16).padStart(2, "0")).join("");
      }
    }
    return RAMP[RAMP.length - 1];
  }

  function dashboardMap(cfg) {
    const el = document.getElementById("dash-map");
    if (!el) return;
    const map = newMap("dash-map");
    addScenes(map, cfg.scenes);
    const b = cfg.campaign.bounds;
    if (b) map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
    else map.setView([0, 0], 2);

    const style = (f) => {
      const p = f.properties;
      const o = OUTLINE[p.status] || OUTLINE.complete;
      return { color: o.color, weight: o.weight, dashArray: o.dashArray, opacity: 1,
               fillColor: tvColour(p.tv, cfg.threshold), fillOpacity: 0.7 };
    };
    const layer = L.geoJSON(null, {
      style,
      onEachFeature: (f, l) => {
        const p = f.properties;
        const tv = p.tv == null ? "—" : p.tv.toFixed(3);
        l.bindTooltip(`${esc(p.block_key)} · TV ${tv} · ${esc(p.status)}`);
        const url = cfg.review.replace("{id}", f.id);
        l.bindPopup(`<strong>${esc(p.block_key)}</strong><br>mean pairwise TV ${tv}<br>` +
          `dominant class ${p.dominant_agrees ? "agreed" : "<b>split</b>"}<br>status: ${esc(p.status)}<br>` +
          `<a href="${esc(url)}">${p.status === "disputed" ? "Adjudicate" : "Review"} →</a>`);
      },
    }).addTo(map);
    const status = L.control({ position: "topright" });
    status.onAdd = () => {
      const d = L.DomUtil.create("div", "map-note");
      d.textContent = "Loading blocks …";
      return d;
    };
    status.addTo(map);
    fetch(cfg.layer, { credentials: "same-origin" })
      .then((r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); return r.json(); })
      .then((data) => {
        layer.addData(data);
        const n = data.features.length;
        status.getContainer().textContent = n ? `${n} blocks with every split` : "No block has every split yet";
        if (n) map.fitBounds(layer.getBounds(), { padding: [20, 20] });
        el.dataset.loaded = String(n);
      })
      .catch((e) => { status.getContainer().textContent = `Could not load the blocks (${e.message}).`; });

    const legend = L.control({ position: "bottomright" });
    legend.onAdd = () => {
      const d = L.DomUtil.create("div", "legend");
      const stops = rampStops(cfg.threshold);
      const grad = RAMP.map((c, i) => `${c} ${(100 * i) / (RAMP.length - 1)}%`).join(", ");
      d.innerHTML =
        `<div class="legend-title">Mean pairwise TV</div>` +
        `<div class="ramp" style="background: linear-gradient(to right, ${grad})"></div>` +
        `<div class="ramp-labels"><span>0</span><span>${stops[2]} threshold</span><span>≥ ${stops[4]}</span></div>` +
        Object.values(OUTLINE).map((o) =>
          `<div class="legend-row"><i style="border-color: ${o.color}; border-width: ${Math.max(1, Math.round(o.weight))}px;` +
          `${o.dashArray ? " border-style: dashed;" : ""} background: #8c959f"></i>${esc(o.label)}</div>`).join("");
      return d;
    };
    legend.addTo(map);
    window.lczDashboard = { map, layer };
  }

  // ---------------------------------------------------------------------------------------------
  // adjudication page
  // ---------------------------------------------------------------------------------------------

  /** "12.5" -> 125 tenths of a percent (= per-mille); "" -> 0; anything else -> null. */
  function tenths(raw) {
    const s = String(raw).trim();
    if (s === "") return 0;
    const m = /^(\d{1,3})(?:[.,](\d?))?$/.exec(s);
    if (!m) return null;
    const v = parseInt(m[1], 10) * 10 + (m[2] ? parseInt(m[2], 10) : 0);
    return v <= 1000 ? v : null;
  }

  function adjudicationPage(cfg) {
    const form = document.getElementById("adj-form");
    const inputs = Array.from(form.querySelectorAll("input.pct"));
    const reason = document.getElementById("reason");
    const submitBtn = document.getElementById("submit-btn");
    const totalCell = document.getElementById("editor-total");
    const totalLine = document.getElementById("total-line");
    const startedLabel = document.getElementById("started-from");
    const result = document.getElementById("result");
    const editorBar = document.getElementById("editor-bar");
    const subtotals = Array.from(form.querySelectorAll(".editor-subtotal"));
    const colourOf = Object.fromEntries(cfg.classes.map((c) => [c.key, c.colour]));
    const labelOf = Object.fromEntries(cfg.classes.map((c) => [c.key, `LCZ ${c.code}`]));
    const groupInputs = Array.from(form.querySelectorAll("tbody.group")).map(
      (tb) => Array.from(tb.querySelectorAll("input.pct")));
    let startedFrom = null;
    let pending = null; // {content, id}: the adjudication being sent and its request id
    let busy = false;
    let state = { valid: false, total: 0 };

    // the map: the block over the imagery, fitted
    const map = newMap("review-map");
    addScenes(map, cfg.scenes);
    const outline = L.geoJSON(cfg.block.geometry, {
      style: { color: "#ffd400", weight: 3, fill: false, opacity: 1 }, interactive: false,
    }).addTo(map);
    map.fitBounds(outline.getBounds(), { padding: [30, 30], maxZoom: 20 });

    function read() {
      let total = 0, valid = true;
      const values = {};
      for (const input of inputs) {
        const v = input.validity && input.validity.badInput ? null : tenths(input.value);
        const bad = v === null;
        input.closest("tr").classList.toggle("bad", bad);
        input.setAttribute("aria-invalid", bad ? "true" : "false");
        if (bad) { valid = false; continue; }
        values[input.dataset.key] = v;
        total += v;
      }
      return { values, total, valid };
    }

    function update() {
      state = read();
      const pct = (state.total / 10).toFixed(1);
      totalCell.textContent = pct;
      const exact = state.valid && state.total === 1000;
      totalCell.dataset.state = exact ? "ok" : "bad";
      groupInputs.forEach((group, i) => {
        const t = group.reduce((s, inp) => s + (tenths(inp.value) || 0), 0);
        if (subtotals[i]) subtotals[i].textContent = (t / 10).toFixed(1);
      });
      let msg, level;
      if (!state.valid) {
        msg = "Each class takes a percentage from 0 to 100 with at most one decimal."; level = "bad";
      } else if (state.total !== 1000) {
        const d = Math.abs(1000 - state.total) / 10;
        msg = `Total ${pct} %: ${d.toFixed(1)} % ${state.total < 1000 ? "short of" : "over"} 100.0 %.`; level = "bad";
      } else if (!reason.value.trim()) {
        msg = "Total 100.0 %. Give a reason to submit."; level = "warn";
      } else {
        msg = "Total 100.0 %. Ready to submit."; level = "ok";
      }
      totalLine.textContent = msg;
      totalLine.dataset.state = level;
      submitBtn.disabled = busy || !(exact && reason.value.trim());
      editorBar.innerHTML = inputs.map((inp) => {
        const v = tenths(inp.value) || 0;
        return v ? `<span style="width: ${Math.min(v, 1000) / 10}%; background: ${colourOf[inp.dataset.key]}"` +
          ` title="${labelOf[inp.dataset.key]} ${(v / 10).toFixed(1)} %"></span>` : "";
      }).join("");
    }

    function fill(permille) {
      inputs.forEach((inp, i) => { inp.value = (permille[i] / 10).toFixed(1); });
    }

    function start(id) {
      if (id === "clear") {
        fill(inputs.map(() => 0));
        startedFrom = null;
        startedLabel.textContent = "nothing yet";
      } else {
        const s = cfg.starts.find((x) => x.id === id);
        if (!s) return;
        fill(s.permille);
        startedFrom = s.id;
        startedLabel.textContent = s.label;
      }
      form.querySelectorAll("[data-col]").forEach((th) => th.classList.remove("chosen"));
      form.querySelectorAll("button.start").forEach((b) => b.classList.toggle("chosen", b.dataset.start === id));
      update();
    }

    form.querySelectorAll("button.start").forEach((b) => b.addEventListener("click", () => start(b.dataset.start)));
    form.addEventListener("input", update);
    inputs.forEach((inp) => inp.addEventListener("blur", () => {
      const v = tenths(inp.value);
      if (v !== null) inp.value = (v / 10).toFixed(1);
    }));

    function showResult(kind, html) {
      result.className = `banner ${kind}`;
      result.innerHTML = html;
      result.hidden = false;
    }

    function errorsHtml(body) {
      if (!body || typeof body !== "object") return "";
      const items = [];
      for (const [field, msgs] of Object.entries(body)) {
        const list = Array.isArray(msgs) ? msgs.join(" ") : String(msgs);
        items.push(`<li>${field === "detail" ? "" : `<b>${esc(field)}</b>: `}${esc(list)}</li>`);
      }
      return `<ul>${items.join("")}</ul>`;
    }

    function applyPayload(p) {
      const badge = document.getElementById("block-status");
      badge.textContent = p.status.charAt(0).toUpperCase() + p.status.slice(1);
      badge.dataset.status = p.status;
      document.getElementById("adjudicate").dataset.status = p.status;
      if (p.final) {
        for (const row of form.querySelectorAll("tr[data-class]")) {
          const cell = row.querySelector("td.final");
          if (cell) cell.textContent = (p.final[row.dataset.class] / 10).toFixed(1);
        }
        form.querySelectorAll("tr.subtotal td.final").forEach((cell, i) => {
          const t = groupInputs[i].reduce((s, inp) => s + p.final[inp.dataset.key], 0);
          cell.textContent = (t / 10).toFixed(1);
        });
        form.querySelector("tfoot td.final").textContent = "100.0";
      }
      const history = document.getElementById("history");
      if (p.adjudications && p.adjudications.length) {
        history.hidden = false;
        history.innerHTML = p.adjudications.map((j) =>
          `<li><strong>${esc(j.reviewer)}</strong> ${esc(String(j.at).slice(0, 16).replace("T", " "))}: ` +
          `${esc(j.reason)} <span class="muted">(started from ${esc(j.started_from)})</span></li>`).join("");
      }
    }

    async function submit() {
      update();
      if (submitBtn.disabled || busy) return;
      busy = true;
      submitBtn.disabled = true;
      submitBtn.textContent = "Saving …";
      const split = {};
      for (const key of cfg.keys) split[key] = state.values[key];
      const content = JSON.stringify({ split, reason: reason.value.trim(), started_from: startedFrom || "scratch" });
      // the same adjudication sent again (e.g. after a lost answer) keeps its request id: recorded once
      if (!pending || pending.content !== content) pending = { content, id: lczHttp.uuid4() };
      try {
        const res = await fetch(cfg.api, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": lczHttp.csrfToken(), Accept: "application/json" },
          body: JSON.stringify(Object.assign({ request_id: pending.id }, JSON.parse(content))),
        });
        let body = null;
        try { body = await res.json(); } catch (e) { body = null; }
        if (res.ok) {
          pending = null;
          applyPayload(body);
          const next = cfg.has_next
            ? `<a href="${esc(cfg.next)}" id="after-next">Next disputed block →</a> <kbd>n</kbd>`
            : `<a href="${esc(cfg.queue)}" id="after-next">No disputed block left: back to the queue</a>`;
          showResult("ok", `<strong>Adjudicated.</strong> The final split of ${esc(cfg.block.key)} is saved. ${next}`);
          document.getElementById("after-next").focus();
        } else if (res.status === 400) {
          showResult("error", `<strong>Not saved:</strong> ${errorsHtml(body)}`);
        } else if (res.status === 403 && body && /CSRF|credentials/i.test(body.detail || "")) {
          showResult("error", `<strong>Not saved:</strong> your session has expired. <a href="/accounts/login/?next=${
            encodeURIComponent(location.pathname)}">Log in again</a> (your split stays in this tab).`);
        } else {
          showResult("error", `<strong>Not saved</strong> (HTTP ${res.status}). ${errorsHtml(body)}`);
        }
      } catch (e) {
        showResult("error", `<strong>Not saved:</strong> the server could not be reached (${esc(e.message)}). Try again.`);
      } finally {
        busy = false;
        submitBtn.textContent = "Set final split";
        update();
      }
    }

    form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });

    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
      const t = e.target;
      const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
                           t.isContentEditable);
      if (e.key === "Enter") {
        if (t && (t.tagName === "BUTTON" || t.tagName === "A")) return;  // their own action
        if (t && t.tagName === "TEXTAREA" && e.shiftKey) return;         // a new line in the reason
        e.preventDefault();
        if (!submitBtn.disabled) submit();
        else {
          totalLine.classList.remove("flash");
          void totalLine.offsetWidth;
          totalLine.classList.add("flash");
        }
      } else if ((e.key === "n" || e.key === "N") && !typing && !e.shiftKey) {
        e.preventDefault();
        location.href = cfg.next;
      }
    });

    update();
    window.lczReview = { map, start, update, state: () => state };
  }

  function init() {
    const dash = readConfig("dash-config");
    if (dash) dashboardMap(dash);
    const review = readConfig("review-config");
    if (review) adjudicationPage(review);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
