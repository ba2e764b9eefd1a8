/* The map every page starts from: a Leaflet map with the blocks' OpenStreetMap attribution, and the
 * campaign's imagery under everything else. Shared by the workspace, dashboard, review and maps pages.
 *
 * lczBasemap.newMap(id, options): L.map on the element `id` (canvas paths, zoom up to 22; `options`
 *   add to or override those).
 * lczBasemap.addScenes(map, scenes): one tile layer per entry ({tiles, tilejson?, attribution}; the
 *   attribution is plain text), its zoom range and bounds from its TileJSON (the defaults below when
 *   it cannot be read). Without `tilejson` it is the one beside the tiles. The pages pass one entry:
 *   the campaign's mosaic (/tiles/campaigns/<id>/...), one seamless layer however many files it has.
 */
(function () {
  "use strict";

  const { esc } = window.lczDom;

  function newMap(id, options) {
    const map = L.map(id, Object.assign({ preferCanvas: true, maxZoom: 22, zoomSnap: 0.25 }, options));
    map.attributionControl.setPrefix(false);
    map.attributionControl.addAttribution("Blocks © OpenStreetMap contributors (ODbL)");
    return map;
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
