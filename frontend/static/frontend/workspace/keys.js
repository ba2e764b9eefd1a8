/* The workspace's keyboard paths and help (see core.js for the parts; the keys are listed in the help
 * dialog of frontend/workspace.html). */
(function () {
  "use strict";

  const W = window.lczWorkspace;
  const { KEY_TO_CLASS, ed } = W;
  const { $ } = window.lczDom;

  function toggleHelp(show) {
    const help = $("#help");
    const on = show == null ? help.hidden : show;
    help.hidden = !on;
    if (on) $("#help-close").focus();
  }
  $("#help-btn").addEventListener("click", () => toggleHelp());
  $("#help-close").addEventListener("click", () => toggleHelp(false));
  $("#help").addEventListener("click", (e) => { if (e.target.id === "help") toggleHelp(false); });

  /* The map's keys: letters no class uses and no editor key means (the arrows, +/- and c, g are
   * taken: ←/→ next/previous, ↑/↓ and Shift ±1/0.1 %, "-" gets its hint, c and g are LCZ C and G). */
  const MAP_KEYS = new Map([
    ["o", () => W.cycleOverlay()],
    ["i", () => W.panStep(0, -1)], ["j", () => W.panStep(-1, 0)],
    ["k", () => W.panStep(0, 1)], ["l", () => W.panStep(1, 0)],
    ["z", () => W.zoomStep(1)], ["Z", () => W.zoomStep(-1)],
    ["h", () => { if (!W.centreOnBlock()) W.toast("No block is open: h brings you back to the open block."); }],
    ["/", () => { const box = $("#goto-input"); box.focus(); box.select(); }],
    ["m", () => W.toggleGuidelines()],   // the guidelines panel (workspace/guidelines.js)
  ]);

  // ---------------------------------------------------------------- going to a block by key or number
  $("#goto").addEventListener("submit", async (e) => {
    e.preventDefault();
    const box = $("#goto-input");
    const text = box.value.trim();
    if (!text) return;
    let b;
    try {
      b = await W.findBlock(text);
    } catch (err) {
      W.toast("Could not look the block up now (offline?).");
      return;
    }
    if (!b) { W.toast(`There is no block “${text}” in this campaign.`, 5000); return; }
    if (!b.assignment) { W.toast(`Block ${b.block_key} is not assigned to you.`, 5000); return; }
    box.value = "";
    box.blur();
    W.openAssignment(b.assignment, { fly: true });
  });
  $("#goto-input").addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !ed.open) { e.target.blur(); W.map.getContainer().focus({ preventScroll: true }); }
  });

  // ---------------------------------------------------------------- the first visit's keys
  const HINT_KEY = "lcz.workspace.firstHintDismissed";
  let hintDismissed = true;
  try { hintDismissed = localStorage.getItem(HINT_KEY) === "1"; } catch (err) { /* private mode: never nag */ }
  if (!hintDismissed) {
    $("#first-hint").hidden = false;
    W.map.invalidateSize({ pan: false });
  }
  $("#first-hint-close").addEventListener("click", () => {
    $("#first-hint").hidden = true;
    try { localStorage.setItem(HINT_KEY, "1"); } catch (err) { /* private mode */ }
    W.map.invalidateSize({ pan: false });
    if (ed.open) $("#editor").focus({ preventScroll: true });
  });

  const confidenceKey = (e) => e.shiftKey && /^Digit[1-5]$/.test(e.code);   // Shift+1..5
  const CLOSED = "No block is open: n opens your next block, p the one you had open (or click a block).";

  /* No modes to remember: a class key always picks its class (its field focused, content selected),
   * and the one digit right after it sets that class's tens of percent (2 5 = LCZ 2 50 %); digits
   * type freely only in a field entered by click or Tab (shown, with how to leave it). Esc leaves a
   * field, then closes the editor; after that every key still answers (p reopens, or a hint). */
  document.addEventListener("keydown", (e) => {
    if (e.isComposing) return;
    const t = e.target;
    const helpOpen = !$("#help").hidden;
    if (helpOpen) {
      if (e.key === "Escape" || e.key === "?") { e.preventDefault(); toggleHelp(false); }
      return;
    }
    const inPct = t.classList && t.classList.contains("pct");
    const inText = !inPct && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && /^(text|search|password|email)$/.test(t.type)));
    const onControl = t.tagName === "INPUT" && !inPct && !inText;   // slider, radio, checkbox
    const key = e.key.toLowerCase();

    if ((e.ctrlKey || e.metaKey) && !e.altKey && (key === "z" || key === "y")) {
      if (inText || !ed.open) return;             // the comment keeps the browser's own undo
      e.preventDefault();
      if (key === "y" || e.shiftKey) W.redo(); else W.undo();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;

    if (e.key === "Escape" && ed.skipArmed) {     // "s" then Esc: nothing chosen
      e.preventDefault();
      ed.skipArmed = false;
      W.renderSkip();
      W.hint("");
      return;
    }
    if (e.key === "Escape") {
      e.preventDefault();
      if (ed.open && (inPct || inText || onControl || t.tagName === "BUTTON")) {
        t.blur();
        $("#editor").focus({ preventScroll: true });
      } else if (ed.open) {
        W.closeEditor();
        W.toast("Closed (draft kept). p reopens it, n opens your next block.");
      }
      return;
    }
    if (inText) return;                           // the comment: plain typing
    if (e.key === "Enter") {
      if (t.tagName === "BUTTON" || t.tagName === "A") return;   // let buttons be pressed
      if (ed.open) { e.preventDefault(); W.submit(); } else { W.toast(CLOSED); }
      return;
    }
    if (ed.skipArmed) {                           // "s" was pressed: a digit picks the reason
      if (/^[0-9]$/.test(e.key) && !e.shiftKey && ed.open && !ed.locked) {
        e.preventDefault();
        if (!W.skipDigit(Number(e.key))) W.hint(`No reason ${e.key}: s, then 1…${W.CFG.skip_reasons.length}.`);
        return;
      }
      if (key !== "s" && e.key.length === 1) { ed.skipArmed = false; W.renderSkip(); }   // any other key: as always
    }
    const i = inPct ? Number(t.dataset.index) : null;
    const typing = inPct && ed.typing === i;
    if (inPct && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
      e.preventDefault();
      const step = (e.shiftKey ? 1 : 10) * (e.key === "ArrowUp" ? 1 : -1);
      W.recordUndo(`arrow${i}`);
      W.setValue(i, (ed.bad.has(i) ? 0 : ed.pm[i]) + step);
      t.select();
      return;
    }
    if (inPct && ed.quick === i && /^[0-9]$/.test(e.key) && !e.shiftKey) {
      e.preventDefault();
      W.quickTens(i, Number(e.key));
      return;
    }
    if (typing && /^[0-9.,]$/.test(e.key) && !confidenceKey(e)) return;          // typing the percentage
    if (typing && (e.key === "ArrowLeft" || e.key === "ArrowRight")) return;     // moving the caret
    if (inPct && e.key.length !== 1 && !/^Arrow(Left|Right)$/.test(e.key)) return;   // Backspace, Tab, …
    if (inPct && e.key.length === 1) e.preventDefault();   // nothing else is typed into a percentage

    if (confidenceKey(e)) {
      e.preventDefault();
      if (ed.open && !ed.locked) W.setConfidence(Number(e.code.slice(5)));
      return;
    }
    if (e.key === "?") { e.preventDefault(); toggleHelp(true); return; }
    if (MAP_KEYS.has(e.key)) { e.preventDefault(); MAP_KEYS.get(e.key)(); return; }
    if ((e.key === "ArrowRight" && !onControl) || key === "n") { e.preventDefault(); W.goNext(); return; }
    if ((e.key === "ArrowLeft" && !onControl) || key === "p") { e.preventDefault(); W.goPrev(); return; }
    if (e.key.length !== 1 || e.key === " ") return;
    const classKey = KEY_TO_CLASS.has(key) && !e.shiftKey;
    const known = classKey || key === "r" || e.key === "." || key === "s";
    if (!ed.open) { if (known) { e.preventDefault(); W.toast(CLOSED); } return; }
    if (ed.locked) { if (known) { e.preventDefault(); W.hint("This block is read only (see above)."); } return; }
    e.preventDefault();
    if (classKey) {
      W.chooseClass(KEY_TO_CLASS.get(key), true, true);
    } else if (key === "r") {
      if (ed.cls == null) { W.hint("Pick a class first (its key), then r puts the remainder there."); return; }
      W.recordUndo();
      W.putRemainder(ed.cls);
    } else if (e.key === ".") {
      W.repeatLast();
    } else if (key === "s") {
      W.armSkip();
    } else if (e.key === "-") {
      W.hint("Percentages run from 0 to 100 %: there is no minus.");
    } else {
      W.hint(`“${e.key}” is not a key here: press ? for the keys.`);
    }
  });

  Object.assign(W, { toggleHelp });
})();
