/* Keyboard helpers shared by the pages with the workspace's keys (the reviewer's adjudication page,
 * the guidelines panel) and the workspace (workspace/core.js, map.js).
 *
 * lczShortcuts.classKey(code): the key of an LCZ class in the editors: "1".."9", "0" (LCZ 10), "a".."g".
 * lczShortcuts.keyToClass(classes): Map key -> class index, for classes in lcz_model.classes order.
 * lczShortcuts.panStep(map, dx, dy): pan a Leaflet map by a third of its view (dx, dy in -1, 0, 1).
 * lczShortcuts.zoomStep(map, d): zoom a Leaflet map in (d > 0) or out by one level.
 * lczShortcuts.editing(target): whether a key press on `target` types text (textarea, text inputs).
 */
(function () {
  "use strict";

  const classKey = (code) => (code === "10" ? "0" : String(code).toLowerCase());
  const keyToClass = (classes) => new Map(classes.map((c, i) => [classKey(c.code), i]));

  function panStep(map, dx, dy) {
    const size = map.getSize();
    map.panBy([Math.round(dx * size.x / 3), Math.round(dy * size.y / 3)], { duration: 0.2 });
  }
  const zoomStep = (map, d) => (d > 0 ? map.zoomIn(1) : map.zoomOut(1));

  const editing = (t) => !!t && (t.tagName === "TEXTAREA" || t.isContentEditable ||
    (t.tagName === "INPUT" && /^(text|search|password|email|url)$/.test(t.type) && !t.classList.contains("pct")));

  window.lczShortcuts = { classKey, keyToClass, panStep, zoomStep, editing };
})();
