/* The map every page starts from: a Leaflet map with the blocks' OpenStreetMap attribution, and the
 * campaign's imagery under everything else. Shared by the workspace, campaign overview, dashboard,
 * review and maps pages.
 *
 * lczBasemap.newMap(id, options, blocksAttribution): L.map on the element `id` (canvas paths, zoom up
 *   to 22; `options` add to or override those); its attribution is one line, opened in full by a
 *   click (app.css), and credits the blocks' recorded geometry sources (`blocksAttribution`, text).
 * lczBasemap.addScenes(map, scenes): one tile layer per entry ({tiles, tilejson?, attribution}; the
 *   attribution is plain text), its zoom range and bounds from its TileJSON (the defaults below when
 *   it cannot be read). Without `tilejson` it is the one beside the tiles. The pages pass one entry:
 *   the campaign's mosaic (/tiles/campaigns/<id>/...), one seamless layer however many files it has.
 */
(function () {
  "use strict";

  const { esc } = window.lczDom;

  function newMap(id, options, blocksAttribution) {
    const map = L.map(id, Object.assign({ preferCanvas: true, maxZoom: 22, zoomSnap: 0.25 }, options));
    map.attributionControl.setPrefix(false);
    if (blocksAttribution) map.attributionControl.addAttribution("Blocks: " + esc(blocksAttribution));
    compactAttribution(map);
    return map;
  }

  /** The attribution as one line (cut with …) that never covers more than the map's bottom edge;
   * a click (or Enter / Space on it) shows it in full, another folds it again. */
  function compactAttribution(map) {
    const box = map.attributionControl.getContainer();
    box.classList.add("lcz-attribution");
    box.tabIndex = 0;
    box.setAttribute("role", "button");
    box.setAttribute("aria-expanded", "false");
    box.title = "Show the full attribution";
    const fit = () => { box.style.maxWidth = `${Math.max(120, map.getSize().x - 24)}px`; };
    const toggle = () => {
      const open = box.classList.toggle("open");
      box.setAttribute("aria-expanded", open ? "true" : "false");
      box.title = open ? "Fold the attribution" : "Show the full attribution";
    };
    L.DomEvent.disableClickPropagation(box);
    L.DomEvent.on(box, "click", toggle);
    L.DomEvent.on(box, "keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { L.DomEvent.preventDefault(e); L.DomEvent.stopPropagation(e); toggle(); }
    });
    map.on("resize", fit);
    fit();
  }

  function addImagery(map, tiles, tilejson, attribution) {
    const o = { maxZoom: 22, maxNativeZoom: 19, minZoom: 0, attribution };
    return fetch(tilejson, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((tj) => {
        if (!tj) return;
        if (Number.isInteger(tj.maxzoom)) o.maxNativeZoom = tj.maxzoom;
        if (Number.isInteger(tj.minzoom)) o.minZoom = tj.minzoom;
        if (Array.isArray(tj.bounds) && tj.bounds.length === 4) {
          o.bounds = L.latLngBounds([tj.bounds[1], tj.bounds[0]], [tj.bounds[3], tj.bounds[2]]);
        }
      })
      .catch(() => null)
      .then(() => L.tileLayer(tiles, o).addTo(map).bringToBack());
  }

  function addScenes(map, scenes) {
    return Promise.all(scenes.map((scene) => addImagery(map, scene.tiles,
      scene.tilejson || scene.tiles.replace(/\{z\}.*$/, "tilejson.json"), esc(scene.attribution))));
  }

  window.lczBasemap = { newMap, addScenes };
})();
