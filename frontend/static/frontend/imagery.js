/* Imagery tile layers of a campaign's scenes, shared by the workspace, dashboard and maps pages.
 *
 * lczImagery.addImagery(map, tiles, tilejson, opts, fromTileJSON): adds a tile layer under
 * everything else; its zoom range and bounds come from the scene's TileJSON (the defaults below
 * when it cannot be read). With fromTileJSON the TileJSON's own tile URL (its default format)
 * replaces `tiles`.
 */
(function () {
  "use strict";

  function addImagery(map, tiles, tilejson, opts, fromTileJSON) {
    const o = Object.assign({ maxZoom: 22, maxNativeZoom: 19, minZoom: 0 }, opts);
    let url = tiles;
    return fetch(tilejson, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((tj) => {
        if (!tj) return;
        if (fromTileJSON && Array.isArray(tj.tiles) && tj.tiles.length) url = tj.tiles[0];
        if (Number.isInteger(tj.maxzoom)) o.maxNativeZoom = tj.maxzoom;
        if (Number.isInteger(tj.minzoom)) o.minZoom = tj.minzoom;
        if (Array.isArray(tj.bounds) && tj.bounds.length === 4) {
          o.bounds = L.latLngBounds([tj.bounds[1], tj.bounds[0]], [tj.bounds[3], tj.bounds[2]]);
        }
      })
      .catch(() => null)
      .then(() => L.tileLayer(url, o).addTo(map).bringToBack());
  }

  window.lczImagery = { addImagery };
})();
