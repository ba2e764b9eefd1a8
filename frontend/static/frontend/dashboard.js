/* The coordinator's dashboard: the map of the blocks coloured by agreement.
 *
 * Configuration comes from #dash-config (frontend.dashboard_views.campaign_dashboard); Leaflet from
 * django-leaflet's static files; the map and its imagery from basemap.js; the blocks as vector
 * tiles of the agreement layer (blocktiles.js). Class order and colours come
 * from the server (lcz_model.classes), never from here. The reviewer's page is review.js.
 */
(function () {
  "use strict";

  const { esc } = window.lczDom;
  const { newMap, addScenes } = window.lczBasemap;

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
    const map = newMap("dash-map", {}, cfg.blocks_attribution);
    addScenes(map, cfg.scenes);
    const b = cfg.campaign.bounds;
    if (b) map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
    else map.setView([0, 0], 2);

    const style = (p) => {
      const o = OUTLINE[p.status] || OUTLINE.complete;
      return { color: o.color, weight: o.weight, dashArray: o.dashArray, opacity: 1,
               fillColor: tvColour(p.tv, cfg.threshold), fillOpacity: 0.7 };
    };
    const tvText = (p) => (p.tv == null ? "—" : p.tv.toFixed(3));
    const status = L.control({ position: "topright" });
    status.onAdd = () => {
      const d = L.DomUtil.create("div", "map-note");
      d.textContent = "Loading blocks …";
      return d;
    };
    status.addTo(map);
    // the released blocks as vector tiles of the view (never the whole campaign at once)
    const note = () => {
      const z = map.getZoom();
      if (z < window.lczBlockTiles.MIN_ZOOM) { status.getContainer().textContent = "Zoom in to see the blocks"; return; }
      if (layer.isLoading()) {           // onLoad comes back once the view's tiles are drawn
        status.getContainer().textContent = "Loading blocks …";
        return;
      }
      const n = layer.features.size;
      status.getContainer().textContent = n ? `${n} blocks with every split here` : "No block has every split here yet";
      el.dataset.loaded = String(n);     // the view's blocks are drawn (tests and scripts/bench_city.py wait for it)
    };
    const layer = window.lczBlockTiles.layer(map, cfg.layer, {
      layerName: "agreement",
      // DECISION: canvas tiles: the whole city at z12 is ~20,000 blocks, too many SVG paths to draw
      // within the page's 1.5 s goal (docs/benchmarks.md, "Dashboard at 20,000 blocks")
      canvas: true,
      style,
      tooltip: (p) => `${esc(p.block_key)} · TV ${tvText(p)} · ${esc(p.status)}`,
      click: (id, p, e) => {
        const url = cfg.review.replace("{id}", id);
        map.openPopup(`<strong>${esc(p.block_key)}</strong><br>mean pairwise TV ${tvText(p)}<br>` +
          `dominant class ${p.dominant_agrees ? "agreed" : "<b>split</b>"}<br>status: ${esc(p.status)}<br>` +
          `<a href="${esc(url)}">${p.status === "disputed" ? "Adjudicate" : "Review"} →</a>`, e.latlng);
      },
      onLoad: note,
    });
    map.on("zoomend", note);
    note();

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

  function init() {
    const cfg = document.getElementById("dash-config");
    if (cfg) dashboardMap(JSON.parse(cfg.textContent));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
