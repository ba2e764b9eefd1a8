/* The interpreter's workspace: a Leaflet map of my street blocks over the campaign imagery, and the
 * split editor. Plain ES2017, no build step: plain scripts, loaded in this order with `defer` by
 * frontend/workspace.html (after dom.js, http.js, percent.js and basemap.js):
 *
 *   workspace/core.js    the namespace window.lczWorkspace (W), the page's configuration, constants,
 *                        the editor's state and what reads it (totals, snapshots), the toast
 *   workspace/map.js     the map: imagery, the blocks layer by my status, the open block, the legend
 *   workspace/save.js    the save queue: autosave, retries with the same request_id, the 409 banner,
 *                        the save state and the progress bar that follows saves
 *   workspace/editor.js  the split form, totals, validation display; opening, closing, next, submit
 *   workspace/keys.js    the keyboard paths and the help
 *   workspace.js         starts it all
 *
 * Each part adds its functions to W; the parts call each other through W when they run, so only this
 * one must come first and workspace.js last.
 *
 * Splits are integers in per-mille (0..1000, sum 1000) everywhere here; percentages with one decimal
 * exist only as text in the inputs, read and written by percent.js (window.lczPercent).
 */
(function () {
  "use strict";

  const CFG = JSON.parse(document.getElementById("ws-config").textContent);
  const CLASSES = CFG.classes;                 // from lcz_model.classes via the page: never hard-coded
  const N = CLASSES.length;
  const KEYS = CLASSES.map((c) => c.key);
  const { TOTAL, parse, format } = window.lczPercent;
  const LOCKED = new Set(["complete", "disputed", "adjudicated"]);
  const STATUS = {
    todo: { label: "To do", color: "#ffd43b", fillOpacity: 0.08, weight: 2 },
    draft: { label: "Draft", color: "#4dabf7", fillOpacity: 0.3, weight: 2.5 },
    submitted: { label: "Submitted", color: "#69db7c", fillOpacity: 0.35, weight: 2 },
    skipped: { label: "Can't label (skipped)", color: "#868e96", fillOpacity: 0.35, weight: 2, dashArray: "4 3" },
    complete: { label: "Complete", color: "#2f9e44", fillOpacity: 0.5, weight: 2 },
    disputed: { label: "Disputed", color: "#f06595", fillOpacity: 0.45, weight: 2.5 },
    adjudicated: { label: "Adjudicated", color: "#adb5bd", fillOpacity: 0.45, weight: 2 },
    unassigned: { label: "Not assigned to me", color: "#ffffff", fillOpacity: 0, weight: 1, opacity: 0.35 },
  };
  // keyboard key for a class: LCZ 1..9 -> "1".."9", LCZ 10 -> "0", LCZ A..G -> "a".."g" (shortcuts.js)
  const CLASS_KEY = CLASSES.map((c) => window.lczShortcuts.classKey(c.code));
  const KEY_TO_CLASS = window.lczShortcuts.keyToClass(CLASSES);

  // ---------------------------------------------------------------- editor state
  const ed = {
    open: false,
    a: null,                // the assignment (API shape) being edited
    id: null,               // its id
    blockId: null,
    pm: new Array(N).fill(0),
    bad: new Map(),         // class index -> message, for inputs whose text does not parse
    confidence: null,
    flags: new Set(),
    comment: "",
    skip: "",               // a can't-label verdict's reason ("" = a split); then pm is all 0
    skipArmed: false,       // "s" was just pressed: one digit picks the reason
    seq: 0,                 // edit counter (global, never reset: queued saves of earlier visits stay older)
    savedSeq: 0,            // edits up to here are saved on the server
    submitted: false,
    conflict: false,
    refused: false,         // the server refused a save of it for good (403: revoked)
    locked: false,
    cls: null,              // the chosen class (keyboard "r" target)
    quick: null,            // the class just picked by its key: one digit now sets its tens of percent
    typing: null,           // the class whose field was entered by click or Tab: digits type there
    undo: [],               // earlier splits of this visit (per-mille arrays), latest last
    redo: [],
  };
  const versions = new Map();   // assignment id -> last version known from the server

  const total = () => ed.pm.reduce((s, v) => s + v, 0);
  // a skip submits without a split ("other" needs a comment)
  const skipReady = () => ed.skip !== "" && (ed.skip !== "other" || ed.comment.trim() !== "");
  const canSubmit = () => ed.open && !ed.locked && !ed.conflict && ed.bad.size === 0 && (ed.skip ? skipReady() : total() === TOTAL);
  const draftable = () => ed.open && !ed.locked && !ed.conflict && !ed.refused && !ed.submitted && ed.bad.size === 0 && total() <= TOTAL;

  function snapshot() {
    const split = {};
    KEYS.forEach((k, i) => { split[k] = ed.pm[i]; });
    return { split, confidence: ed.confidence, flags: CFG.flags.map((f) => f.key).filter((k) => ed.flags.has(k)),
             comment: ed.comment, skip_reason: ed.skip };
  }

  const url = (tpl, id) => tpl.replace("{id}", String(id));

  let toastTimer = null;
  function toast(text, ms = 3500) {
    const t = document.getElementById("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, ms);
  }

  // a handle for the other parts, for people poking in the console, and for the browser tests
  window.lczWorkspace = {
    CFG, CLASSES, N, KEYS, TOTAL, LOCKED, STATUS, CLASS_KEY, KEY_TO_CLASS,
    ed, versions, total, canSubmit, draftable, skipReady, snapshot, url, toast,
    parsePercent: parse, fmtPercent: format,
  };
})();
