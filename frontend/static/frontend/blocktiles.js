/* The campaign's blocks as vector tiles (GET /tiles/campaigns/<id>/blocks/<layer>/{z}/{x}/{y}.mvt,
 * annotator.vector_tiles), drawn by Leaflet.VectorGrid (vendor/leaflet.vectorgrid). Shared by the
 * dashboard, the LCZ maps and the workspace: no page downloads the whole campaign.
 *
 * lczBlockTiles.layer(map, url, {layerName, style(props), click(id, props, e), tooltip(props) -> html,
 *   onLoad(features), onChange(features), adjust(id, props, requestStart), hover, minZoom, pane}):
 *   the layer, added to `map`. `adjust` may change a block's properties as a tile brings them (the
 *   workspace keeps statuses saved after the tile was asked for); `onChange` also runs when tiles
 *   leave the view (their blocks are forgotten); `hover: false` leaves hover alone. It draws with the SVG tile renderer (the canvas
 *   one calls L.DomEvent.fakeStop, gone from Leaflet 1.9, on every click). Hover thickens a block's
 *   outline and shows `tooltip` beside the pointer. The layer keeps `features` (block id -> properties
 *   of every block in a loaded tile) and calls `onLoad(features)` whenever tiles finish loading;
 *   `restyle()` draws every loaded block again from `style` (after a page changes what colours mean);
 *   `refresh()` asks the server again (statuses changed).
 */
(function () {
  "use strict";

  const MIN_ZOOM = 12;     // annotator.vector_tiles.MIN_ZOOM: below it the server has no block tiles

  /** A VectorGrid that remembers the features of the tiles it loaded (block id -> properties). */
  const Remembering = L.VectorGrid.Protobuf.extend({
    _getVectorTilePromise(coords, tileBounds) {
      const started = performance.now();
      return L.VectorGrid.Protobuf.prototype._getVectorTilePromise.call(this, coords, tileBounds).then((json) => {
        const key = this._tileCoordsToKey(coords);
        const ids = [];
        for (const name in json.layers) {
          for (const f of json.layers[name].features) {
            // one properties object per block, shared by every tile that holds it
            const have = this.features.get(f.id);
            if (have) Object.assign(have, f.properties);
            const props = have || f.properties;
            if (this._adjust) this._adjust(f.id, props, started);
            f.properties = props;
            this.features.set(f.id, props);
            ids.push(f.id);
          }
        }
        this._tileIds.set(key, ids);
        return json;
      });
    },
    /** Forget the blocks of a tile that left the view (unless another loaded tile holds them). */
    _forgetTile(key) {
      const gone = this._tileIds.get(key) || [];
      this._tileIds.delete(key);
      delete this._vectorTiles[key];
      if (!gone.length) return;
      const kept = new Set();
      for (const ids of this._tileIds.values()) for (const id of ids) kept.add(id);
      for (const id of gone) if (!kept.has(id)) this.features.delete(id);
    },
    _createLayer(feat, pxPerExtent) {
      const path = L.VectorGrid.Protobuf.prototype._createLayer.call(this, feat, pxPerExtent);
      path.blockId = feat.id;        // the block id, for events
      return path;
    },
  });

  function layer(map, url, opts) {
    const styleOf = (props) => Object.assign({ fill: true }, opts.style(props));
    const layerStyles = {};
    layerStyles[opts.layerName] = (props) => styleOf(props);
    const grid = new Remembering(url, {
      rendererFactory: L.svg.tile,
      vectorTileLayerStyles: layerStyles,
      interactive: true,
      getFeatureId: (f) => f.id,
      minZoom: Math.max(MIN_ZOOM, opts.minZoom || 0),
      maxZoom: 22,
      pane: opts.pane || "tilePane",
      fetchOptions: { credentials: "same-origin" },
    });
    grid.features = new Map();
    grid._tileIds = new Map();
    grid._adjust = opts.adjust || null;
    grid.on("tileunload", (e) => {
      grid._forgetTile(grid._tileCoordsToKey(e.coords));
      if (opts.onChange) opts.onChange(grid.features);
    });
    let hovered = null;
    const tip = L.tooltip({ sticky: true, direction: "top", className: "lcz-tip", offset: [0, -8] });
    grid.on("click", (e) => { if (opts.click) opts.click(e.layer.blockId, e.layer.properties, e); });
    if (opts.hover !== false) grid.on("mouseover", (e) => {
      const id = e.layer.blockId;
      if (hovered != null && hovered !== id) grid.resetFeatureStyle(hovered);
      hovered = id;
      const s = styleOf(e.layer.properties);
      grid.setFeatureStyle(id, Object.assign({}, s, { weight: (s.weight || 1) + 2 }));
      if (opts.tooltip) tip.setLatLng(e.latlng).setContent(opts.tooltip(e.layer.properties)).addTo(map);
    });
    if (opts.hover !== false) grid.on("mousemove", (e) => { if (opts.tooltip && map.hasLayer(tip)) tip.setLatLng(e.latlng); });
    if (opts.hover !== false) grid.on("mouseout", (e) => {
      const id = e.layer.blockId;
      if (hovered === id) { grid.resetFeatureStyle(id); hovered = null; }
      map.removeLayer(tip);
    });
    grid.on("load", () => {
      if (opts.onLoad) opts.onLoad(grid.features);
      if (opts.onChange) opts.onChange(grid.features);
    });
    grid.restyle = () => { for (const id of grid.features.keys()) grid.resetFeatureStyle(id); };
    grid.refresh = () => { grid.features.clear(); grid._tileIds.clear(); grid.redraw(); };
    return grid.addTo(map);
  }

  window.lczBlockTiles = { layer, MIN_ZOOM };
})();
