/* The interpreter's workspace, started: the editor built, the progress bar filled, the map on the
 * campaign (or on the block in the address, #a=<assignment>), my blocks loaded. The parts it starts
 * are in workspace/ (see workspace/core.js for the layout); they are loaded before this file. */
(function () {
  "use strict";

  const W = window.lczWorkspace;

  W.buildEditor();
  W.refreshProgress();
  W.fitCampaign();
  const fromHash = /^#a=(\d+)$/.exec(location.hash);
  if (fromHash) {
    W.fetchAssignment(Number(fromHash[1]))
      .then((a) => { W.map.fitBounds(W.bboxBounds(a.block.bbox).pad(0.6), { maxZoom: 19 }); W.openEditorWith(a, false); })
      .catch(() => history.replaceState(null, "", location.pathname));
  }
  W.loadBlocks();
  window.addEventListener("hashchange", () => {
    const m = /^#a=(\d+)$/.exec(location.hash);
    if (m && Number(m[1]) !== W.ed.id) W.openAssignment(Number(m[1]), { fly: true });
  });
})();
