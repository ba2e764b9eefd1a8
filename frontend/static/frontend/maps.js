/* LCZ maps: street blocks coloured by one class's fraction or by their dominant class, from the
 * consensus or a model's predictions, over the campaign's imagery.
 *
 * Configuration comes from #maps-config (frontend.dashboard_views.lcz_maps); classes, their order
 * and their WUDAPT colours come from the server (lcz_model.classes), never from here. The blocks come
 * as vector tiles of the view (/tiles/campaigns/{id}/blocks/fractions/{z}/{x}/{y}.mvt?source=..., 17
 * per-mille values per block; blocktiles.js), over the map and imagery of basemap.js: never the
 * whole campaign. Keyboard: ← / → previous / next class, d toggles the dominant mode.
 */
(function () {
  "use strict";

  const FRACTION_OPACITY = [0.35, 0.9];    // fill opacity at 0 % and at 100 % (times the opacity slider)
  const DOMINANT_OPACITY = 0.8;
  const OUTLINE = { color: "#ffffff", weight: 1, opacity: 0.9 };
  // a disputed block of the consensus has no settled label: grey, dashed, never a class's colour
  const DISPUTED = { color: "#24292f", weight: 1.5, opacity: 0.9, dashArray: "4 3", fill: true,
                     fillColor: "#6e7781", fillOpacity: 0.55 };

  const { esc } = window.lczDom;
  const { newMap, addScenes } = window.lczBasemap;
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const toHex = (v) => "#" + v.map((x) => Math.round(x).toString(16).padStart(2, "0")).join("");
  const pct = (permille) => `${window.lczPercent.format(permille)} %`;

  /** The sequential ramp of a class: white and nearly transparent at 0, its WUDAPT colour at 1. */
  function ramp(colour, f) {
    const t = Math.max(0, Math.min(1, f));
    const c = rgb(colour);
    return {
      fillColor: toHex(c.map((v) => 255 + t * (v - 255))),
      fillOpacity: +(FRACTION_OPACITY[0] + t * (FRACTION_OPACITY[1] - FRACTION_OPACITY[0])).toFixed(4),
    };
  }

  function init() {
    const cfgEl = document.getElementById("maps-config");
    if (!cfgEl) return;
    const cfg = JSON.parse(cfgEl.textContent);
    const classes = cfg.classes;
    const byKey = Object.fromEntries(classes.map((c) => [c.key, c]));
    const sourceSel = document.getElementById("source");
    const modeInputs = Array.from(document.querySelectorAll('#modes input[name="mode"]'));
    const classButtons = Array.from(document.querySelectorAll("#class-list button[data-key]"));
    const mapEl = document.getElementById("lcz-map");
    const opacityInput = document.getElementById("opacity");

    // state, from the address (shareable), else consensus / fraction of the first class
    const q = new URLSearchParams(location.search);
    const state = {
      source: q.get("source") || "consensus",
      mode: q.get("mode") === "dominant" ? "dominant" : "fraction",
      cls: byKey[q.get("class")] ? q.get("class") : classes[0].key,
      opacity: 1,
    };
    if (!Array.from(sourceSel.options).some((o) => o.value === state.source)) addSource(state.source);

    // --- the map ---------------------------------------------------------------------------------
    const map = newMap("lcz-map", { keyboard: false }, cfg.blocks_attribution);
    addScenes(map, cfg.scenes);
    const b = cfg.campaign.bounds;
    const panel = document.getElementById("maps-panel");
    const left = panel && panel.offsetWidth < mapEl.clientWidth / 2 ? panel.offsetLeft + panel.offsetWidth : 0;
    if (b) map.fitBounds([[b[1], b[0]], [b[3], b[2]]], { paddingTopLeft: [left + 20, 20], paddingBottomRight: [20, 20], animate: false });
    else map.setView([0, 0], 2);

    let layer = null;                       // the source's vector tiles (a new layer per source)
    const features = () => (layer ? [...layer.features.values()] : []);

    const note = L.control({ position: "topright" });
    note.onAdd = () => L.DomUtil.create("div", "map-note");
    note.addTo(map);
    const setNote = (text, kind) => {
      const el = note.getContainer();
      el.textContent = text;
      el.dataset.kind = kind || "";
      el.id = "maps-note";
    };

    const legend = L.control({ position: "bottomright" });
    legend.onAdd = () => {
      const d = L.DomUtil.create("div", "legend lcz-legend");
      d.id = "lcz-legend";
      L.DomEvent.disableClickPropagation(d);
      return d;
    };
    legend.addTo(map);

    // --- colours -------------------------------------------------------------------------------
    /** From the consensus, a disputed block (not adjudicated yet) is shown as disputed, never as a class. */
    const isDisputed = (p) => state.source === "consensus" && p.status === "disputed";

    function styleOf(p) {
      if (isDisputed(p)) return { ...DISPUTED, fillOpacity: DISPUTED.fillOpacity * state.opacity };
      if (state.mode === "dominant") {
        const c = byKey[p.dominant];
        return { ...OUTLINE, fill: true, fillColor: c ? c.colour : "#8c959f",
                 fillOpacity: DOMINANT_OPACITY * state.opacity };
      }
      const s = ramp(byKey[state.cls].colour, (p[state.cls] || 0) / 1000);
      return { ...OUTLINE, fill: true, fillColor: s.fillColor, fillOpacity: s.fillOpacity * state.opacity };
    }

    function topThree(p) {
      return classes.map((c) => ({ c, v: p[c.key] || 0 })).filter((x) => x.v > 0)
        .sort((x, y) => y.v - x.v || x.c.index - y.c.index).slice(0, 3);
    }

    function tooltipOf(p) {
      if (isDisputed(p)) {
        return `<div class="tip-key">${esc(p.block_key)}</div><div class="tip-disputed">Disputed: the interpreters ` +
          `disagree; no class until a reviewer adjudicates it.</div>`;
      }
      const rows = topThree(p).map(({ c, v }) =>
        `<tr><td><i class="swatch" style="background: ${esc(c.colour)}"></i>${esc(c.label)}</td>` +
        `<td class="name">${esc(c.name)}</td><td class="num">${pct(v)}</td></tr>`);
      let extra = "";
      if (state.mode === "fraction" && !topThree(p).some((x) => x.c.key === state.cls)) {
        const c = byKey[state.cls];
        extra = `<tr class="selected"><td><i class="swatch" style="background: ${esc(c.colour)}"></i>${esc(c.label)}</td>` +
          `<td class="name">${esc(c.name)}</td><td class="num">${pct(p[state.cls] || 0)}</td></tr>`;
      }
      return `<div class="tip-key">${esc(p.block_key)}</div><table>${rows.join("")}${extra}</table>`;
    }

    function renderLegend() {
      const d = legend.getContainer();
      const src = sourceSel.selectedOptions[0] ? sourceSel.selectedOptions[0].textContent : state.source;
      let nDisputed = 0;
      for (const p of features()) if (isDisputed(p)) nDisputed += 1;
      const disputedRow = nDisputed
        ? `<div class="legend-row" data-key="disputed"><i class="swatch disputed-swatch"></i>` +
          `<span>Disputed (not adjudicated yet)</span><span class="count">${nDisputed}</span></div>` : "";
      if (state.mode === "fraction") {
        const c = byKey[state.cls];
        const stops = [0, 0.25, 0.5, 0.75, 1].map((f) => {
          const s = ramp(c.colour, f);
          const [r, g, bl] = rgb(s.fillColor);
          return `rgba(${r}, ${g}, ${bl}, ${s.fillOpacity}) ${f * 100}%`;
        });
        d.dataset.mode = "fraction";
        d.dataset.class = c.key;
        d.innerHTML =
          `<div class="legend-title">${esc(c.label)} ${esc(c.name)}: share of the block</div>` +
          `<div class="ramp checker"><div style="background: linear-gradient(to right, ${stops.join(", ")})"></div></div>` +
          `<div class="ramp-ticks"><span>0 %</span><span>50 %</span><span>100 %</span></div>` +
          disputedRow + `<div class="legend-source muted">${esc(src)}</div>`;
      } else {
        const counts = {};
        for (const p of features()) if (!isDisputed(p)) counts[p.dominant] = (counts[p.dominant] || 0) + 1;
        const present = classes.filter((c) => counts[c.key]);
        d.dataset.mode = "dominant";
        delete d.dataset.class;
        d.innerHTML = `<div class="legend-title">Dominant class</div>` +
          (present.length || nDisputed ? present.map((c) =>
            `<div class="legend-row" data-key="${esc(c.key)}"><i class="swatch" style="background: ${esc(c.colour)}"></i>` +
            `<span>${esc(c.label)} ${esc(c.name)}</span><span class="count">${counts[c.key]}</span></div>`).join("")
            : `<div class="muted">no blocks</div>`) + disputedRow +
          `<div class="legend-source muted">${esc(src)}</div>`;
      }
    }

    function restyle() {
      if (layer) layer.restyle();
      renderLegend();
      modeInputs.forEach((i) => { i.checked = i.value === state.mode; });
      classButtons.forEach((btn) => {
        const on = btn.dataset.key === state.cls;
        btn.setAttribute("aria-checked", on ? "true" : "false");
        btn.tabIndex = on ? 0 : -1;
      });
      document.getElementById("class-list").classList.toggle("inactive", state.mode === "dominant");
      mapEl.dataset.mode = state.mode;
      mapEl.dataset.class = state.cls;
      const params = new URLSearchParams({ source: state.source, mode: state.mode, class: state.cls });
      history.replaceState(null, "", `${location.pathname}?${params}`);
    }

    // --- data ------------------------------------------------------------------------------------
    function addSource(id) {
      const o = document.createElement("option");
      o.value = id;
      o.textContent = id === "consensus" ? "Consensus (labels)" : `Model ${id}`;
      sourceSel.appendChild(o);
    }

    /** What the loaded tiles hold, in the note and the legend (after every load, zoom and source). */
    function loaded() {
      if (map.getZoom() < window.lczBlockTiles.MIN_ZOOM) {
        setNote("Zoom in to see the blocks.", "empty");
        mapEl.dataset.loaded = "";
        return;
      }
      if (!layer || layer.isLoading()) return;
      const n = layer.features.size;
      setNote(n ? `${n} block${n === 1 ? "" : "s"} here · ${sourceSel.selectedOptions[0].textContent}`
        : (state.source === "consensus"
          ? "No block here has a consensus yet: blocks appear once all their interpreters have submitted."
          : `Model ${state.source} has no predictions here.`), n ? "" : "empty");
      renderLegend();
      mapEl.dataset.loaded = String(n);
    }

    function load(source) {
      mapEl.dataset.loaded = "";
      setNote("Loading blocks …", "busy");
      if (layer) map.removeLayer(layer);
      const url = `${cfg.block_tiles}?source=${encodeURIComponent(source)}`;
      layer = window.lczBlockTiles.layer(map, url, {
        layerName: "fractions",
        style: styleOf,
        tooltip: tooltipOf,
        click: (id, p, e) => {
          if (source !== "consensus" || !cfg.review) return;
          map.openPopup(`<strong>${esc(p.block_key)}</strong><br>` +
            `<a href="${esc(cfg.review.replace("{id}", id))}">Open its splits for review →</a>`, e.latlng);
        },
        onLoad: loaded,
      });
      restyle();
      loaded();
    }
    map.on("zoomend", loaded);

    // --- controls --------------------------------------------------------------------------------
    function setClass(key) {
      state.cls = key;
      state.mode = "fraction";
      restyle();
    }

    function stepClass(delta) {
      const i = classes.findIndex((c) => c.key === state.cls);
      setClass(classes[(i + delta + classes.length) % classes.length].key);  // back to the fraction mode
    }

    function toggleDominant() {
      state.mode = state.mode === "dominant" ? "fraction" : "dominant";
      restyle();
    }

    sourceSel.value = state.source;
    sourceSel.addEventListener("change", () => { state.source = sourceSel.value; load(state.source); });
    modeInputs.forEach((i) => i.addEventListener("change", () => {
      if (i.checked) { state.mode = i.value; restyle(); }
    }));
    classButtons.forEach((btn) => btn.addEventListener("click", () => setClass(btn.dataset.key)));
    if (opacityInput) {
      opacityInput.addEventListener("input", () => {
        state.opacity = Math.max(0, Math.min(100, Number(opacityInput.value))) / 100;
        if (layer) layer.restyle();
      });
    }

    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
      const t = e.target;
      if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
      const inList = t && t.closest && t.closest("#class-list");
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        e.preventDefault();
        stepClass(e.key === "ArrowRight" ? 1 : -1);
        if (inList) document.querySelector(`#class-list button[data-key="${state.cls}"]`).focus();
      } else if ((e.key === "d" || e.key === "D") && !e.shiftKey) {
        e.preventDefault();
        toggleDominant();
      }
    });

    restyle();
    load(state.source);

    /** For tests and the console: the colour a block is drawn with now (the options of its drawn path). */
    function styleOfBlock(blockKey) {
      const id = [...(layer ? layer.features : [])].find(([, p]) => p.block_key === blockKey);
      if (!id) return null;
      for (const key in layer._vectorTiles) {
        const drawn = layer._vectorTiles[key]._features[id[0]];
        if (drawn) {
          const o = drawn.feature.options;
          return { fillColor: o.fillColor, fillOpacity: o.fillOpacity, color: o.color };
        }
      }
      return null;
    }

    window.lczMaps = { map, get layer() { return layer; }, state, ramp, styleOfBlock, setClass, toggleDominant, load };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
