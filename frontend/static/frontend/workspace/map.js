/* The workspace's map (see core.js for the parts): imagery, my blocks coloured by my status (vector
 * tiles of the view, /tiles/campaigns/<id>/blocks/mine/..., drawn by blocktiles.js), the open
 * block's outline, the legend, and moving to a block. */
(function () {
  "use strict";

  const W = window.lczWorkspace;
  const { CFG, STATUS, LOCKED, ed } = W;
  const { esc } = window.lczDom;
  const BLOCKS_MIN_ZOOM = 14;                  // below this only the campaign outline is drawn

  const map = window.lczBasemap.newMap("map", { zoomSnap: 1, keyboard: false }, CFG.blocks_attribution);

  window.lczBasemap.addScenes(map, CFG.campaign.scenes.map((scene) => ({
    tiles: scene.tiles,
    attribution: [
      scene.attribution || CFG.campaign.imagery_attribution,
      "Licence: " + (scene.licence || CFG.campaign.imagery_licence || "not stated"),
    ].filter(Boolean).join(" · ") + (scene.synthetic ? " (synthetic imagery)" : ""),
  })));

  const campBounds = CFG.campaign.bounds
    ? L.latLngBounds([CFG.campaign.bounds[1], CFG.campaign.bounds[0]], [CFG.campaign.bounds[3], CFG.campaign.bounds[2]])
    : null;
  if (campBounds) {
    L.rectangle(campBounds, { interactive: false, fill: false, color: "#ffffff", weight: 1,
                              dashArray: "6 6", opacity: 0.6 }).addTo(map);
  }

  function blockStyle(props) {
    const s = STATUS[props.status] || STATUS.todo;
    return { color: s.color, weight: s.weight, opacity: s.opacity == null ? 0.95 : s.opacity,
             fill: true, fillColor: s.color, fillOpacity: s.fillOpacity };
  }
  // block id -> {feature: {id, properties}} of every block in a loaded tile (the blocks "here")
  const blockLayers = new Map();
  // statuses saved here after a tile was asked for: that tile is older than they are
  const localStatus = new Map();     // block id -> {status, at}
  const newerLocally = (id, started) => localStatus.has(id) && localStatus.get(id).at >= started;
  let blocks = null;
  // the blocks' own pane, above the overlay pane's canvas (the campaign's outline), which would
  // otherwise take the clicks meant for them
  const blocksPane = map.createPane("blocks");
  blocksPane.style.zIndex = 410;
  function syncBlocks(features) {
    for (const id of blockLayers.keys()) if (!features.has(id)) blockLayers.delete(id);
    for (const [id, properties] of features) {
      const have = blockLayers.get(id);
      if (!have || have.feature.properties !== properties) blockLayers.set(id, { feature: { id, properties } });
    }
    legend.update();
  }
  function makeBlocksLayer() {
    return window.lczBlockTiles.layer(map, CFG.api.block_tiles, {
      layerName: "mine",
      style: blockStyle,
      hover: false,
      minZoom: BLOCKS_MIN_ZOOM,
      pane: "blocks",                  // under the open block's outline; faded by the opacity control
      adjust: (id, props, started) => { if (newerLocally(id, started)) props.status = localStatus.get(id).status; },
      click: (id, properties) => onBlockClick({ id, properties }),
      onChange: syncBlocks,
    });
  }
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
  map.on("zoomend", () => zoomHint.update(Math.round(map.getZoom())));

  /** My blocks: the tiles of the view (Leaflet asks for new tiles as the view moves); `force`:
   * ask the server again for the tiles in view (statuses changed elsewhere). */
  function loadBlocks(force = false) {
    zoomHint.update(Math.round(map.getZoom()));
    if (!blocks) { blocks = makeBlocksLayer(); return; }
    if (force) blocks.refresh();
  }

  function setBlockStatus(blockId, status) {
    localStatus.set(blockId, { status, at: performance.now() });
    const layer = blockLayers.get(blockId);
    if (layer && !LOCKED.has(layer.feature.properties.status)) {
      layer.feature.properties.status = status;
      blocks.resetFeatureStyle(blockId);         // drawn again from the status, in every tile
      legend.update();
    }
  }
  /** The status the map shows for a block (a locked block's own: complete, disputed, adjudicated). */
  function blockStatus(blockId) {
    const layer = blockLayers.get(blockId);
    return layer ? layer.feature.properties.status : null;
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

  L.control.scale({ position: "bottomleft", metric: true, imperial: false, maxWidth: 120 }).addTo(map);

  // ---------------------------------------------------------------- the blocks overlay's opacity
  // (o cycles visible -> faint -> hidden; the slider sets any opacity): the imagery under a block
  // can be seen. The whole blocks canvas fades (outlines and fill); the open block's outline stays.
  const OVERLAY_KEY = "lcz.workspace.overlay";
  const FAINT = 0.3;
  const overlayPane = map.getPane("overlayPane");
  const overlayCtl = L.control({ position: "topright" });
  overlayCtl.onAdd = function () {
    const div = L.DomUtil.create("div", "overlay-ctl");
    div.title = "Opacity of the blocks over the imagery (o: visible, faint, hidden)";
    div.innerHTML = '<label for="overlay-opacity">Blocks <kbd>o</kbd></label>' +
      '<input id="overlay-opacity" type="range" min="0" max="100" step="5" aria-label="Opacity of the blocks">';
    L.DomEvent.disableClickPropagation(div);
    L.DomEvent.disableScrollPropagation(div);
    this._input = div.querySelector("input");
    this._input.addEventListener("input", () => setOverlay(Number(this._input.value) / 100, false));
    return div;
  };
  overlayCtl.addTo(map);
  let overlay = 1;
  function setOverlay(v, announce = true) {
    overlay = Math.max(0, Math.min(1, Number(v)));
    if (!Number.isFinite(overlay)) overlay = 1;
    overlayPane.style.opacity = blocksPane.style.opacity = String(overlay);
    overlayCtl._input.value = String(Math.round(overlay * 100));
    try { localStorage.setItem(OVERLAY_KEY, String(overlay)); } catch (err) { /* private mode */ }
    if (announce) W.toast(`Blocks ${overlay === 0 ? "hidden" : overlay < 1 ? "faint" : "visible"} (o changes it).`, 1500);
  }
  /** o: visible -> faint -> hidden -> visible (any other opacity from the slider goes to the next of those). */
  function cycleOverlay() {
    setOverlay(overlay > FAINT ? FAINT : overlay > 0 ? 0 : 1);
  }
  let savedOverlay = null;
  try { savedOverlay = localStorage.getItem(OVERLAY_KEY); } catch (err) { /* private mode */ }
  setOverlay(savedOverlay == null ? 1 : savedOverlay, false);

  // ---------------------------------------------------------------- moving by keys
  /** Pan by a third of the view (dx, dy in -1, 0, 1). */
  const panStep = (dx, dy) => window.lczShortcuts.panStep(map, dx, dy);
  const zoomStep = (d) => window.lczShortcuts.zoomStep(map, d);
  /** Back to the open block (false when none is open). */
  function centreOnBlock() {
    if (!ed.open || !ed.a) return false;
    const bounds = bboxBounds(ed.a.block.bbox);
    map.setView(bounds.getCenter(), Math.max(BLOCKS_MIN_ZOOM, Math.min(19, map.getBoundsZoom(bounds.pad(1)))));
    return true;
  }

  // ---------------------------------------------------------------- finding a block by key or number
  let allBlocks = null;              // the campaign's blocks (features without geometry use), asked once, on a miss
  /** The block whose key (or a unique start of it, from 4 characters) or number is `text`: its
   * feature properties with `id`, or null. Looks in the loaded blocks first, then asks once for all. */
  async function findBlock(text) {
    const q = String(text).trim().toLowerCase().replace(/^#/, "");
    if (!q) return null;
    const match = (features) => {
      if (/^\d+$/.test(q)) {
        const f = features.find((x) => String(x.id) === q);
        if (f) return f;
      }
      const exact = features.find((x) => String(x.properties.block_key).toLowerCase() === q);
      if (exact) return exact;
      if (q.length < 4) return null;
      const starts = features.filter((x) => String(x.properties.block_key).toLowerCase().startsWith(q));
      return starts.length === 1 ? starts[0] : null;
    };
    const found = match([...blockLayers.values()].map((l) => l.feature));
    if (found) return { id: found.id, ...found.properties };
    if (!allBlocks) {
      const res = await fetch(`${CFG.api.blocks}?zoom=${BLOCKS_MIN_ZOOM}`, {
        credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      allBlocks = (await res.json()).features;
    }
    const f = match(allBlocks);
    return f ? { id: f.id, ...f.properties } : null;
  }

  function onBlockClick(feature) {
    const p = feature.properties;
    if (!p.assignment) { W.toast(`Block ${p.block_key} is not assigned to you.`); return; }
    W.openAssignment(p.assignment, { fly: false });
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
  /** The open block is gone from the editor: no outline, and the map takes the editor's room. */
  function clearBlock() {
    highlight.clearLayers();
    map.invalidateSize({ pan: false });
  }

  /** My next open (to do, draft) block loaded on the map after `afterId`, as its assignment id. */
  function nextLoadedBlock(afterId) {
    const open = [...blockLayers.values()].map((l) => l.feature)
      .filter((f) => f.properties.assignment && (f.properties.status === "todo" || f.properties.status === "draft"))
      .sort((x, y) => x.id - y.id);
    const later = open.find((f) => f.id > afterId) || open.find((f) => f.id !== afterId);
    return later ? later.properties.assignment : null;
  }

  /** The first view: the campaign, or the world when it has no extent yet. */
  function fitCampaign() {
    if (campBounds) map.fitBounds(campBounds.pad(0.05), { maxZoom: 18 });
    else map.setView([0, 0], 2);
  }

  Object.assign(W, {
    map, blockLayers, loadBlocks, setBlockStatus, blockStatus, showBlock, clearBlock, bboxBounds,
    nextLoadedBlock, fitCampaign, setOverlay, cycleOverlay, panStep, zoomStep, centreOnBlock, findBlock,
  });
  Object.defineProperty(W, "overlay", { get: () => overlay, enumerable: true });
  Object.defineProperty(W, "moving", { get: () => moving, enumerable: true });
})();
