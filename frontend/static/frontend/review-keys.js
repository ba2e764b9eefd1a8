/* The reviewer's adjudication page, by keyboard: the workspace's keys where they make sense here
 * (listed in the page's help, ?):
 *
 *   1-9, 0, a-g  pick that class's field (LCZ 10 is 0); the one digit right after sets its tens of
 *                percent (2 5 = LCZ 2 50 %); digits type freely only in a field entered by click or Tab
 *   r            the remainder into the picked class
 *   ↑ / ↓        in a field: ±1 % (Shift: ±0.1 %)
 *   Ctrl+Z / Ctrl+Shift+Z (Ctrl+Y)   undo / redo a change of the split (start-from buttons included)
 *   Enter        submit (the split must total 100.0 % and the reason is required); Shift+Enter: new line
 *   n / p        next / previous disputed block in the review queue
 *   i j k l, z / Z, h, o   pan, zoom in / out, back to the block, its outline visible / faint / hidden
 *   Esc          leave the field; closes the help
 *
 * Percentages are read and written by percent.js; class keys and map steps come from shortcuts.js.
 * review.js builds the page and hands over window.lczReview.
 */
(function () {
  "use strict";

  const R = window.lczReview;
  if (!R) return;
  const { $ } = window.lczDom;
  const { TOTAL, parse, format } = window.lczPercent;
  const K = window.lczShortcuts;
  const { cfg, map, outline, inputs, form } = R;
  const KEY_TO_CLASS = K.keyToClass(cfg.classes);
  const rows = inputs.map((inp) => inp.closest("tr"));
  const root = $("#adjudicate");
  const help = $("#review-help");
  const hint = $("#review-key-hint");

  const ks = { picked: null, quick: null, typing: null, undo: [], redo: [], lastTag: null };

  // ---------------------------------------------------------------- undo / redo of the split
  const values = () => inputs.map((inp) => inp.value);
  function restore(vals) {
    inputs.forEach((inp, i) => { inp.value = vals[i]; });
    R.update();
  }
  /** Remember the split before a change; `tag`: consecutive changes with the same tag are one step. */
  function recordUndo(tag = null) {
    if (tag && tag === ks.lastTag) return;
    const now = values();
    const last = ks.undo[ks.undo.length - 1];
    if (!last || last.some((v, i) => v !== now[i])) ks.undo.push(now);
    if (ks.undo.length > 200) ks.undo.shift();
    ks.redo = [];
    ks.lastTag = tag;
  }
  function step(from, to, what) {
    const vals = from.pop();
    if (!vals) { say(`Nothing to ${what}.`); return; }
    to.push(values());
    ks.lastTag = null;
    restore(vals);
    say(what === "undo" ? "Undone." : "Redone.");
  }
  const undo = () => step(ks.undo, ks.redo, "undo");
  const redo = () => step(ks.redo, ks.undo, "redo");

  form.addEventListener("beforeinput", (e) => {
    if (e.target.classList.contains("pct")) recordUndo(`type${inputs.indexOf(e.target)}`);
  });
  form.addEventListener("click", (e) => { if (e.target.closest("button.start")) recordUndo(); }, true);

  // ---------------------------------------------------------------- the split by keys
  let hintTimer = null;
  function say(text) {
    hint.textContent = text;
    clearTimeout(hintTimer);
    hintTimer = setTimeout(() => { hint.textContent = ""; }, 4000);
  }

  let picking = false;
  function pick(i, quick) {
    ks.picked = i;
    ks.quick = quick ? i : null;
    rows.forEach((r, k) => r.classList.toggle("chosen", k === i));
    picking = true;
    try { inputs[i].focus(); } finally { picking = false; }
    inputs[i].select();
    if (quick) say(`LCZ ${cfg.classes[i].code}: one digit sets its tens of percent.`);
  }
  function setValue(i, pm) {
    inputs[i].value = format(Math.max(0, Math.min(TOTAL, pm)));
    R.update();
  }
  function remainder(i) {
    const others = inputs.reduce((s, inp, k) => s + (k === i ? 0 : parse(inp.value).value || 0), 0);
    recordUndo();
    setValue(i, TOTAL - others);
    inputs[i].select();
  }
  inputs.forEach((inp, i) => {
    inp.addEventListener("focus", () => {
      if (picking) return;
      ks.typing = i;                    // entered by click or Tab: digits type here
      ks.quick = null;
      ks.picked = i;
      rows.forEach((r, k) => r.classList.toggle("chosen", k === i));
    });
    inp.addEventListener("blur", () => { if (ks.typing === i) ks.typing = null; if (ks.quick === i) ks.quick = null; });
  });

  // ---------------------------------------------------------------- the map
  const FAINT = 0.3;
  let outlineOpacity = 1;
  function cycleOutline() {
    outlineOpacity = outlineOpacity > FAINT ? FAINT : outlineOpacity > 0 ? 0 : 1;
    outline.setStyle({ opacity: outlineOpacity });
    root.dataset.outline = String(outlineOpacity);
    say(`Block outline ${outlineOpacity === 0 ? "hidden" : outlineOpacity < 1 ? "faint" : "visible"} (o changes it).`);
  }
  const recentre = () => map.fitBounds(outline.getBounds(), { padding: [30, 30], maxZoom: 20 });
  const MAP_KEYS = new Map([
    ["o", cycleOutline],
    ["i", () => K.panStep(map, 0, -1)], ["j", () => K.panStep(map, -1, 0)],
    ["k", () => K.panStep(map, 0, 1)], ["l", () => K.panStep(map, 1, 0)],
    ["z", () => K.zoomStep(map, 1)], ["Z", () => K.zoomStep(map, -1)],
    ["h", recentre],
  ]);

  // ---------------------------------------------------------------- next / previous in the queue
  const goNext = () => { location.href = cfg.next; };
  /** The disputed block before this one in the queue's order (wrapping), else the queue itself. */
  async function goPrev() {
    let rowsOfQueue;
    try {
      const res = await fetch(root.dataset.queueApi, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      rowsOfQueue = await res.json();
    } catch (err) {
      say(`The queue could not be read now (${err.message}).`);
      return;
    }
    const ids = rowsOfQueue.filter((r) => r.status === "disputed").map((r) => r.id);
    const here = ids.indexOf(cfg.block.id);
    const before = here >= 0 ? ids.slice(0, here).reverse().concat(ids.slice(here + 1).reverse()) : ids.slice().reverse();
    const prev = before.find((id) => id !== cfg.block.id);
    location.href = prev != null ? root.dataset.reviewUrl.replace("999999999", String(prev)) : cfg.queue;
  }

  // ---------------------------------------------------------------- help
  function toggleHelp(show) {
    const on = show == null ? help.hidden : show;
    help.hidden = !on;
    if (on) $("#review-help-close").focus();
  }
  $("#review-help-btn").addEventListener("click", () => toggleHelp());
  $("#review-help-close").addEventListener("click", () => toggleHelp(false));
  help.addEventListener("click", (e) => { if (e.target === help) toggleHelp(false); });

  // ---------------------------------------------------------------- the keys
  document.addEventListener("keydown", (e) => {
    if (e.isComposing) return;
    const t = e.target;
    if (!help.hidden) {
      if (e.key === "Escape" || e.key === "?") { e.preventDefault(); toggleHelp(false); }
      return;
    }
    const inPct = !!(t && t.classList && t.classList.contains("pct"));
    const inText = K.editing(t);
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;

    if ((e.ctrlKey || e.metaKey) && !e.altKey && (key === "z" || key === "y")) {
      if (inText) return;                          // the reason keeps the browser's own undo
      e.preventDefault();
      if (key === "y" || e.shiftKey) redo(); else undo();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape") {
      if (inPct || inText || (t && t.tagName === "BUTTON")) { e.preventDefault(); t.blur(); }
      return;
    }
    if (e.key === "Enter") {
      if (t && (t.tagName === "BUTTON" || t.tagName === "A")) return;   // their own action
      if (t && t.tagName === "TEXTAREA" && e.shiftKey) return;          // a new line in the reason
      e.preventDefault();
      R.trySubmit();
      return;
    }
    if (inText) return;                            // the reason: plain typing
    const i = inPct ? inputs.indexOf(t) : -1;
    if (inPct && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
      e.preventDefault();
      recordUndo(`arrow${i}`);
      const v = (parse(t.value).value || 0) + (e.shiftKey ? 1 : 10) * (e.key === "ArrowUp" ? 1 : -1);
      setValue(i, v);
      t.select();
      return;
    }
    if (inPct && ks.quick === i && /^[0-9]$/.test(e.key)) {
      e.preventDefault();
      recordUndo();
      setValue(i, Number(e.key) * 100);
      ks.quick = null;
      t.select();
      return;
    }
    if (inPct && ks.typing === i && /^[0-9.,]$/.test(e.key)) return;     // typing the percentage
    if (inPct && e.key.length !== 1) return;                             // Backspace, Tab, arrows
    if (e.key.length !== 1 || e.key === " ") return;

    if (e.key === "?") { e.preventDefault(); toggleHelp(true); return; }
    if (MAP_KEYS.has(e.key)) { e.preventDefault(); MAP_KEYS.get(e.key)(); return; }
    if (key === "n" && !e.shiftKey) { e.preventDefault(); goNext(); return; }
    if (key === "p" && !e.shiftKey) { e.preventDefault(); goPrev(); return; }
    if (KEY_TO_CLASS.has(key) && !e.shiftKey) { e.preventDefault(); pick(KEY_TO_CLASS.get(key), true); return; }
    if (key === "r") {
      e.preventDefault();
      if (ks.picked == null) say("Pick a class first (its key), then r puts the remainder there.");
      else remainder(ks.picked);
      return;
    }
    if (inPct) { e.preventDefault(); say(`“${e.key}” is not a key here: press ? for the keys.`); }
  });

  Object.assign(R, { undo, redo, pick, keys: ks, toggleHelp, goPrev });
})();
