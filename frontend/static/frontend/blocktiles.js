/* The campaign's blocks as vector tiles (GET /tiles/campaigns/<id>/blocks/<layer>/{z}/{x}/{y}.mvt,
 * annotator.vector_tiles), drawn by Leaflet.VectorGrid (vendor/leaflet.vectorgrid). Shared by the
 * dashboard, the LCZ maps and the workspace: no page downloads the whole campaign.
 *
 * lczBlockTiles.layer(map, url, {layerName, style(props), click(id, props, e), tooltip(props) -> html,
 *   onLoad(features), onChange(features), adjust(id, props, requestStart), hover, minZoom, pane}):
 *   the layer, added to `map`. `adjust` may change a block's properties as a tile brings them (the
 *   workspace keeps statuses saved after the tile was asked for); `onChange` also runs when tiles
 *   leave the view (their blocks are forgotten); `hover: false` leaves hover alone; `canvas: true`
 *   draws each tile on one canvas (CanvasTile below) instead of one SVG path per block. Hover thickens a block's
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

  /** VectorGrid's canvas tile, its pointer events mended for Leaflet 1.9 (patched here, the vendored
   * file is unchanged). VectorGrid 1.3 (a) finds the pointer in the tile as layer point minus
   * tile x size minus pixel origin, which holds only when the map's zoom is the tile's: the pages
   * zoom in quarters (basemap.js: zoomSnap 0.25), so at z 17.5 a z18 tile is drawn 181 px wide and hover missed;
   * (b) calls L.DomEvent.fakeStop on a click (gone since Leaflet 1.8: every click on a block threw)
   * and fires nothing on a miss, while Leaflet 1.9 ignores DOM events on a renderer's canvas
   * (`_leaflet_disable_events`), so a click beside the blocks never reached the map. Here the point
   * is the pointer projected at the tile's own zoom, and clicks are L.Canvas._onClick of Leaflet 1.9.3
   * (hover is Leaflet's `_handleMouseHover`, as in VectorGrid). (c) The canvas has one pixel per CSS
   * pixel, blurred on high-density screens, where SVG is sharp: here it has devicePixelRatio as many. */
  const CanvasTile = L.Canvas.Tile.extend({
    initialize(coords, size, options) {
      L.Canvas.Tile.prototype.initialize.call(this, coords, size, options);
      const r = window.devicePixelRatio || 1;
      if (r !== 1) {                        // GridLayer keeps the tile's CSS size; drawing is scaled
        this._container.width = Math.round(size.x * r);
        this._container.height = Math.round(size.y * r);
        this._ctx.scale(r, r);
      }
    },
    _tilePoint(e) {
      const c = this._tileCoord;
      return this._map.project(this._map.mouseEventToLatLng(e), c.z).subtract(c.scaleBy(this._size));
    },
    _onMouseMove(e) {
      const m = this._map;
      if (!m || m.dragging.moving() || m._animatingZoom) return;
      this._handleMouseHover(e, this._tilePoint(e));
    },
    _onClick(e) {
      if (!this._map) return;
      const point = this._tilePoint(e);
      const isClick = e.type === "click" || e.type === "preclick";
      let hit = null;
      for (let order = this._drawFirst; order; order = order.next) {
        const l = order.layer;
        if (l.options.interactive && l._containsPoint(point) && !(isClick && this._map._draggableMoved(l))) hit = l;
      }
      this._fireEvent(hit ? [hit] : false, e);
    },
  });
  const canvasTile = (coords, size, options) => new CanvasTile(coords, size, options);

  function layer(map, url, opts) {
    const styleOf = (props) => Object.assign({ fill: true }, opts.style(props));
    const layerStyles = {};
    layerStyles[opts.layerName] = (props) => styleOf(props);
    const grid = new Remembering(url, {
      rendererFactory: opts.canvas ? canvasTile : L.svg.tile,
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
