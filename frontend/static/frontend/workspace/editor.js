/* The workspace's split editor (see core.js for the parts): the form (17 classes, confidence, flags,
 * comment), totals and validation display, and the editor's way through the blocks: open, close,
 * next, submit. */
(function () {
  "use strict";

  const W = window.lczWorkspace;
  const { CFG, CLASSES, N, KEYS, TOTAL, STATUS, LOCKED, CLASS_KEY, ed, versions, total, canSubmit } = W;
  const { parse, format } = window.lczPercent;
  const { $, el } = window.lczDom;
  const fmtInput = (pm) => (pm === 0 ? "" : format(pm));

  let seqCounter = 0;
  let openToken = 0;

  function showErrors(errors) {
    const box = $("#ed-errors");
    if (!errors) { box.hidden = true; box.textContent = ""; return; }
    box.textContent = "";
    const list = el("ul");
    for (const [field, msgs] of Object.entries(errors)) {
      const idx = KEYS.indexOf(field);
      const name = idx >= 0 ? `LCZ ${CLASSES[idx].code}` : field === "detail" ? "" : field;
      list.append(el("li", { text: (name ? name + ": " : "") + [].concat(msgs).join(" ") }));
    }
    box.append(el("strong", { text: "Not saved." }), list);
    box.hidden = false;
  }

  // ---------------------------------------------------------------- the form
  const rows = [];
  function buildEditor() {
    const box = $("#classes");
    for (const group of ["built", "natural"]) {
      box.append(el("h3", { class: "group", text: group === "built" ? "Built" : "Natural" }));
      CLASSES.forEach((c, i) => {
        if (c.group !== group) return;
        const input = el("input", { type: "text", inputmode: "decimal", class: "pct", id: `pct-${c.key}`,
                                    name: c.key, placeholder: "0", "aria-label": `LCZ ${c.code} ${c.name}, percent`,
                                    "data-index": i, maxlength: 5 });
        const slider = el("input", { type: "range", min: 0, max: TOTAL, step: 1, value: 0, class: "slider",
                                     "aria-label": `LCZ ${c.code} ${c.name}, slider`, tabindex: -1 });
        const rest = el("button", { type: "button", class: "rest", title: "Put the remainder here (r)",
                                    "aria-label": `Put the remainder into LCZ ${c.code}`, tabindex: -1, text: "+rest" });
        const row = el("div", { class: "cls", "data-key": c.key, title: `LCZ ${c.code} ${c.name}: ${c.description}` },
          el("kbd", { class: "key", text: CLASS_KEY[i] }),
          el("span", { class: "swatch", style: `background:${c.colour}` }),
          el("label", { for: input.id, class: "name" }, el("b", { text: c.code }), " " + c.name),
          slider, input, el("span", { class: "unit", text: "%" }), rest);
        input.addEventListener("input", () => onPctInput(i));
        input.addEventListener("focus", () => {            // entered by click or Tab: plain typing here
          if (picking) return;
          chooseClass(i, false);
          ed.typing = i;
          showMode();
        });
        input.addEventListener("blur", () => {
          if (!ed.bad.has(i)) input.value = fmtInput(ed.pm[i]);
          if (ed.typing === i) ed.typing = null;
          if (ed.quick === i) ed.quick = null;
          showMode();
        });
        slider.addEventListener("input", () => { recordUndo(`slider${i}`); setValue(i, parseInt(slider.value, 10)); });
        rest.addEventListener("click", () => { recordUndo(); putRemainder(i); });
        box.append(row);
        rows[i] = { row, input, slider, rest };
      });
    }
    const conf = $("#confidence");
    for (let v = 1; v <= 5; v++) {
      const input = el("input", { type: "radio", name: "confidence", value: v, id: `conf-${v}` });
      input.addEventListener("change", () => { ed.confidence = v; changed(); });
      input.addEventListener("click", () => {                    // clicking the chosen one clears it
        if (ed.confidence === v) { input.checked = false; ed.confidence = null; changed(); }
      });
      conf.append(el("label", { for: `conf-${v}`, class: "pill" }, input, el("span", { text: String(v) })));
    }
    conf.append(el("span", { class: "muted hint", text: "1 unsure … 5 certain" }));
    const flags = $("#flags");
    for (const f of CFG.flags) {
      const input = el("input", { type: "checkbox", name: "flags", value: f.key, id: `flag-${f.key}` });
      input.addEventListener("change", () => { if (input.checked) ed.flags.add(f.key); else ed.flags.delete(f.key); changed(); });
      flags.append(el("label", { for: input.id, class: "flag" }, input, " " + f.label));
    }
    const skipBox = $("#skip-reasons");
    CFG.skip_reasons.forEach((r, k) => {
      const input = el("input", { type: "radio", name: "skip_reason", value: r.key, id: `skip-${r.key}` });
      input.addEventListener("change", () => setSkip(r.key));
      input.addEventListener("click", () => { if (ed.skip === r.key) setSkip(""); });   // the chosen one: clears it
      skipBox.append(el("label", { for: input.id, class: "pill skip-pill" }, input,
                        el("kbd", { text: String(k + 1) }), el("span", { text: " " + r.label })));
    });
    const unskip = el("button", { type: "button", id: "skip-clear", class: "ghost", text: "Label it after all",
                                  title: "Back to the split (Ctrl+Z also brings the split back)" });
    unskip.addEventListener("click", () => setSkip(""));
    skipBox.append(unskip);
    $("#comment").addEventListener("input", (e) => { ed.comment = e.target.value; changed(); });
    $("#split-form").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
    $("#ed-close").addEventListener("click", () => closeEditor());
    $("#ed-next").addEventListener("click", () => goNext());
    $("#next-btn").addEventListener("click", () => goNext());
  }

  // ---------------------------------------------------------------- undo, redo, the last split
  let lastEdit = null;             // edits of one kind in a row (typing in one field, one slider drag) undo as one
  /** Remember the split as it is before a change (`kind`: a run of the same kind is one step). */
  function recordUndo(kind = null) {
    if (kind && kind === lastEdit) return;
    lastEdit = kind;
    ed.undo.push({ pm: ed.pm.slice(), skip: ed.skip });
    if (ed.undo.length > 100) ed.undo.shift();
    ed.redo = [];
  }
  function applySplit(pm) {
    ed.bad.clear();
    pm.forEach((v, i) => { ed.pm[i] = v; rows[i].slider.value = String(v); rows[i].input.value = fmtInput(v); });
    lastEdit = null;
    const active = document.activeElement;
    if (active && active.classList && active.classList.contains("pct")) active.select();
    changed();
  }
  function undo(redoing = false) {
    const from = redoing ? ed.redo : ed.undo;
    if (!ed.open || ed.locked || !from.length) { hint(redoing ? "Nothing to redo." : "Nothing to undo."); return; }
    (redoing ? ed.undo : ed.redo).push({ pm: ed.pm.slice(), skip: ed.skip });
    const state = from.pop();
    ed.skip = state.skip;
    renderSkip();
    applySplit(state.pm);
    hint(redoing ? "Redone." : "Undone (Ctrl+Shift+Z redoes).");
  }
  const redo = () => undo(true);

  let lastSplit = null;            // the split last submitted in this tab ("." repeats it)
  function repeatLast() {
    if (!lastSplit) { hint("Nothing to repeat yet: “.” repeats the split you last submitted here."); return; }
    recordUndo();
    endSkip();
    applySplit(lastSplit);
    hint("The last split again: Enter submits, Ctrl+Z undoes.");
  }

  /** A short line under the totals: what the keys do now, or why a key did nothing. */
  function hint(text) {
    const node = $("#ed-hint");
    node.textContent = text || "";
  }
  function showMode() {
    rows.forEach((r, k) => { r.row.classList.toggle("quick", ed.quick === k); r.row.classList.toggle("typing", ed.typing === k); });
    if (ed.quick != null) hint(`LCZ ${CLASSES[ed.quick].code}: one digit sets its tens (5 = 50 %), r the remainder; any class key moves on.`);
    else if (ed.typing != null) hint(`Typing LCZ ${CLASSES[ed.typing].code}'s percentage; Tab or Esc leaves, letters still pick classes.`);
    else hint("");
  }

  /** The digit typed right after picking a class by its key: that many tens of percent. */
  function quickTens(i, d) {
    recordUndo();
    setValue(i, d * 100);
    ed.quick = null;
    rows[i].input.select();
    showMode();
  }

  function onPctInput(i) {
    recordUndo(`type${i}`);
    endSkip();
    const r = parse(rows[i].input.value);
    if (r.error) {
      ed.bad.set(i, r.error);
    } else {
      ed.bad.delete(i);
      ed.pm[i] = r.value;
      rows[i].slider.value = String(r.value);
    }
    changed();
  }

  function setValue(i, pm) {
    endSkip();
    pm = Math.max(0, Math.min(TOTAL, pm | 0));
    ed.pm[i] = pm;
    ed.bad.delete(i);
    rows[i].slider.value = String(pm);
    rows[i].input.value = fmtInput(pm);
    changed();
  }

  function putRemainder(i) {
    if (i == null || ed.locked) return;
    if (ed.bad.has(i)) ed.bad.delete(i);
    const others = total() - ed.pm[i];
    setValue(i, TOTAL - others);            // clamped to 0..1000
    chooseClass(i, true);
  }

  let picking = false;
  /** Choose a class; `focus`: into its field, content selected; `quick`: picked by its key, so the
   * next digit sets its tens (never a mode to leave: any other key acts as everywhere else). */
  function chooseClass(i, focus, quick = false) {
    ed.cls = i;
    rows.forEach((r, k) => r.row.classList.toggle("chosen", k === i));
    if (focus) {
      const input = rows[i].input;
      picking = true;
      try {
        if (document.activeElement !== input) input.focus({ preventScroll: false });
      } finally {
        picking = false;
      }
      input.select();
      rows[i].row.scrollIntoView({ block: "nearest" });
      ed.typing = null;
      ed.quick = quick ? i : null;
      showMode();
    }
  }

  // ---------------------------------------------------------------- can't label (a skip)
  /** Mark the block "can't label" with a reason ("" = back to the split): the split is cleared (the
   * undo stack keeps it, Ctrl+Z brings it back); any split edit ends the skip. */
  function setSkip(reason) {
    ed.skipArmed = false;
    if (ed.locked || reason === ed.skip) { renderSkip(); return; }
    recordUndo();
    ed.skip = reason;
    if (reason) {
      ed.quick = ed.typing = null;
      applySplit(new Array(N).fill(0));
      hint(reason === "other" ? "Can't label: say why in the comment, then Enter submits."
                              : "Can't label: Enter submits it; Ctrl+Z brings the split back.");
      if (reason === "other") $("#comment").focus();
    } else {
      changed();
      hint("");
    }
    renderSkip();
  }
  function endSkip() {
    if (!ed.skip) return;
    ed.skip = "";
    renderSkip();
  }
  /** "s": the next digit picks the reason (no mode: any other key acts as everywhere else). */
  function armSkip() {
    ed.skipArmed = true;
    ed.quick = null;
    $("#editor").focus({ preventScroll: true });      // out of a percentage: the digit picks the reason
    renderSkip();
    hint("Can't label: " + CFG.skip_reasons.map((r, k) => `${k + 1} ${r.label.toLowerCase()}`).join(", ") + ".");
  }
  function skipDigit(d) {
    const r = CFG.skip_reasons[d - 1];
    if (!r) { ed.skipArmed = false; renderSkip(); return false; }
    setSkip(r.key);
    return true;
  }
  function renderSkip() {
    for (const input of document.querySelectorAll("#skip-reasons input")) input.checked = input.value === ed.skip;
    $("#skip-clear").hidden = !ed.skip || ed.locked;
    $("#editor").classList.toggle("skipping", !!ed.skip);
    $("#skip-box").classList.toggle("armed", ed.skipArmed);
  }

  /** A confidence from the keyboard (Shift+1..5). */
  function setConfidence(v) {
    document.getElementById(`conf-${v}`).checked = true;
    ed.confidence = v;
    changed();
  }

  function changed() {
    ed.seq = ++seqCounter;
    renderTotals();
    showErrors(null);
    if (!ed.submitted) W.scheduleAutosave();
    else W.renderSaveState();
  }

  function renderTotals() {
    const t = total();
    $("#total").textContent = ed.bad.size ? "—" : format(t) + " %";    // never a stale sum
    const diff = $("#diff");
    if (ed.bad.size) {
      const [i, msg] = ed.bad.entries().next().value;
      diff.textContent = `LCZ ${CLASSES[i].code}: ${msg}`;
      diff.dataset.state = "bad";
    } else if (ed.skip) {
      const r = CFG.skip_reasons.find((x) => x.key === ed.skip);
      diff.textContent = W.skipReady() ? `⊘ can't label: ${r ? r.label : ed.skip}` : "⊘ can't label: say why in the comment";
      diff.dataset.state = W.skipReady() ? "ok" : "left";
    } else if (t === TOTAL) {
      diff.textContent = "✓ complete";
      diff.dataset.state = "ok";
    } else if (t < TOTAL) {
      diff.textContent = `${format(TOTAL - t)} % left`;
      diff.dataset.state = "left";
    } else {
      diff.textContent = `${format(t - TOTAL)} % over`;
      diff.dataset.state = "bad";
    }
    rows.forEach((r, i) => {
      r.row.classList.toggle("bad", ed.bad.has(i));
      r.row.classList.toggle("set", ed.pm[i] > 0);
      r.rest.title = t - ed.pm[i] < TOTAL ? `Put the remainder here: ${format(TOTAL - (t - ed.pm[i]))} % (r)` : "Put the remainder here (r)";
    });
    const stack = $("#stack");
    stack.textContent = "";
    CLASSES.forEach((c, i) => {
      if (ed.pm[i] > 0 && !ed.bad.has(i)) {
        stack.append(el("span", { style: `width:${Math.min(ed.pm[i], TOTAL) / 10}%;background:${c.colour}`,
                                  title: `LCZ ${c.code} ${format(ed.pm[i])} %` }));
      }
    });
    $("#submit-btn").disabled = !canSubmit();
    $("#submit-btn").textContent = ed.locked ? "Read only" : ed.submitted ? "Submit again ⏎" : "Submit ⏎";
  }

  function renderEditorState() {
    $("#conflict").hidden = !ed.conflict;
    const status = ed.locked ? lockedStatus() : ed.submitted ? (ed.skip ? "skipped" : "submitted")
      : versions.get(ed.id) ? "draft" : "todo";
    $("#ed-readonly").hidden = !ed.locked;
    $("#ed-readonly").textContent = !ed.locked ? ""
      : status === "disputed" ? "This block is disputed: its interpreters' splits differ and a reviewer will decide. It can no longer be edited."
      : status === "adjudicated" ? "A reviewer has decided this block's split. It can no longer be edited."
      : "This block is complete and in review; it can no longer be edited.";
    const badge = $("#ed-status");
    badge.textContent = (STATUS[status] || STATUS.todo).label;
    badge.dataset.status = status;
    for (const r of rows) { r.input.disabled = r.slider.disabled = r.rest.disabled = ed.locked; }
    for (const node of document.querySelectorAll("#confidence input, #flags input, #comment, #skip-reasons input")) node.disabled = ed.locked;
    renderSkip();
    renderTotals();
    W.renderSaveState();
  }

  function fillEditor(a, source) {
    ed.a = a;
    ed.id = a.id;
    ed.blockId = a.block.id;
    ed.pm = source ? KEYS.map((k) => source.split[k] | 0) : new Array(N).fill(0);
    ed.bad = new Map();
    ed.confidence = source ? source.confidence : null;
    ed.flags = new Set(source ? source.flags || [] : []);
    ed.comment = source ? source.comment || "" : "";
    ed.skip = (source && source.skip_reason) || "";
    ed.skipArmed = false;
    ed.seq = ed.savedSeq = ++seqCounter;
    ed.submitted = !!(a.annotation && a.annotation.submitted);
    ed.conflict = false;
    ed.refused = false;
    ed.locked = !!(ed.submitted && LOCKED.has(blockOwnStatus()));
    ed.undo = [];
    ed.redo = [];
    ed.quick = ed.typing = null;
    lastEdit = null;
    rows.forEach((r, i) => { r.input.value = fmtInput(ed.pm[i]); r.slider.value = String(ed.pm[i]); });
    for (const input of document.querySelectorAll("#confidence input")) input.checked = Number(input.value) === ed.confidence;
    for (const input of document.querySelectorAll("#flags input")) input.checked = ed.flags.has(input.value);
    $("#comment").value = ed.comment;
    $("#ed-block").textContent = `Block ${a.block.block_key}`;
    $("#ed-area").textContent = `${Math.round(a.block.area_m2).toLocaleString()} m² · assignment ${a.id}`;
    const note = $("#ed-suggestion");
    note.hidden = !a.suggestion;
    note.textContent = a.suggestion
      ? `Review mode: started from the model's split (model ${a.suggestion.model_version}). Accept it or edit it.`
      : "";
    showErrors(null);
    chooseClass(null, false);
    showMode();
    renderEditorState();
  }

  /** The block's own status once it left my hands: the server's word, else the map's. */
  const blockOwnStatus = () => (ed.a && ed.a.block.block_status) || W.blockStatus(ed.blockId);
  function lockedStatus() {
    const s = blockOwnStatus();
    return LOCKED.has(s) ? s : "complete";
  }

  // ---------------------------------------------------------------- open, close, next, submit
  async function fetchAssignment(aid) {
    const res = await fetch(W.url(CFG.api.assignment, aid), { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(res.status === 404 ? "That block is not assigned to you." : `HTTP ${res.status}`);
    return res.json();
  }

  // ---------------------------------------------------------------- the tab's history (p / ←)
  const back = [];                 // assignment ids opened before in this tab, latest last
  function remember(id) {
    if (id == null || back[back.length - 1] === id) return;
    back.push(id);
    if (back.length > 30) back.shift();
  }
  async function goPrev() {
    while (back.length && back[back.length - 1] === ed.id) back.pop();
    const id = back.pop();
    if (id == null) { W.toast("No earlier block in this tab."); return; }
    await openAssignment(id, { fly: true, fromHistory: true });
  }

  async function openAssignment(aid, { fly = true, data = null, fromHistory = false } = {}) {
    if (ed.open && ed.id === aid) { $("#editor").focus(); return; }
    const token = ++openToken;
    W.saveDraftNow();                               // leaving a block never drops its edits
    let a = data;
    try {
      if (!a) a = await fetchAssignment(aid);
    } catch (err) {
      W.toast(err instanceof TypeError ? "Offline: cannot open that block now." : err.message);
      if (token === openToken) history.replaceState(null, "", ed.open ? `#a=${ed.id}` : location.pathname + location.search);
      return;
    }
    if (token !== openToken) return;                // a later click won
    openEditorWith(a, fly, fromHistory);
  }

  function openEditorWith(a, fly, fromHistory = false) {
    if (!fromHistory && ed.open && ed.id !== a.id) remember(ed.id);
    const pending = W.pendingFor(a.id);
    if (!pending.length) versions.set(a.id, a.annotation ? a.annotation.version : 0);
    // edits still in the save queue are newer than what the server sent
    // assisted rounds: a block not yet touched opens on the model's split (blind rounds get none)
    const suggested = a.suggestion ? { split: a.suggestion.split, confidence: null, flags: [], comment: "" } : null;
    const source = pending.length ? pending[pending.length - 1].body : (a.annotation || suggested);
    const wasOpen = ed.open;
    ed.open = true;
    $("#editor").hidden = false;
    fillEditor(a, source);
    if (!wasOpen) W.map.invalidateSize({ pan: false });
    W.showBlock(a, fly);
    history.replaceState(null, "", `#a=${a.id}`);
    $("#editor").focus({ preventScroll: true });
  }

  function closeEditor() {
    W.saveDraftNow();
    remember(ed.id);
    openToken++;
    ed.open = false;
    ed.id = ed.blockId = ed.a = null;
    $("#editor").hidden = true;
    W.clearBlock();
    history.replaceState(null, "", location.pathname + location.search);
    W.renderSaveState();
    W.map.getContainer().focus({ preventScroll: true });
  }

  let nextBusy = false;
  async function goNext(afterBlockId) {
    if (nextBusy) return;
    nextBusy = true;
    try {
      const after = afterBlockId != null ? afterBlockId : ed.blockId;
      W.saveDraftNow();
      // a draft queued for the block we are leaving must reach the server first, so the server's
      // queue (which goes forward from this block, drafts in their place) knows its status
      if (ed.id != null && W.pendingFor(ed.id).length) {
        if (W.isOffline()) W.toast("Waiting for the connection to save this draft before moving on…");
        await Promise.all(W.pendingFor(ed.id).map((q) => q.promise));
      }
      const res = await fetch(CFG.api.next + (after != null ? `?after=${after}` : ""), {
        credentials: "same-origin", headers: { Accept: "application/json" } });
      if (res.status === 204) {
        W.toast("All your blocks are submitted. Thank you!", 6000);
        if (ed.open && ed.submitted) closeEditor();
        return;
      }
      if (!res.ok) { W.toast(`Could not get the next block (HTTP ${res.status}).`); return; }
      let a = await res.json();
      if (ed.open && a.id === ed.id) {
        // never expected (the server skips the block we leave), but if it is handed back: take the
        // next of my open blocks on the map instead
        const other = W.nextLoadedBlock(ed.blockId);
        if (!other) { W.toast("This is your only open block here: submit it, or pan to find another."); return; }
        await openAssignment(other, { fly: true });
        return;
      }
      openAssignment(a.id, { fly: true, data: a });
    } catch (err) {
      W.toast("Offline: cannot fetch the next block now.");
    } finally {
      nextBusy = false;
    }
  }

  let submitting = false;
  async function submit() {
    if (!ed.open || submitting) return;
    if (!canSubmit()) {
      const diff = $("#diff");
      diff.classList.remove("flash"); void diff.offsetWidth; diff.classList.add("flash");
      if (ed.skip === "other") { hint("Can't label (other): say why in the comment first."); $("#comment").focus(); }
      return;
    }
    submitting = true;
    $("#submit-btn").disabled = true;
    W.cancelAutosave();
    const aid = ed.id;
    const blockId = ed.blockId;
    const pm = ed.pm.slice();
    try {
      const skipped = !!ed.skip;
      const r = await W.enqueue(aid, blockId, W.snapshot(), true, ed.seq);
      if (r.ok && !skipped) lastSplit = pm;       // "." repeats splits, never a skip
      if (r.ok && ed.id === aid) {               // (the progress bar follows the save by itself: save.js)
        W.toast("Submitted. Opening your next block…", 2000);
        await goNext(blockId);
      }
    } finally {
      submitting = false;
      if (ed.open) renderTotals();
    }
  }

  Object.assign(W, {
    showErrors, buildEditor, setValue, putRemainder, chooseClass, setConfidence, renderEditorState, fillEditor,
    fetchAssignment, openAssignment, openEditorWith, closeEditor, goNext, goPrev, submit,
    recordUndo, undo, redo, repeatLast, quickTens, hint, showMode, setSkip, armSkip, skipDigit, renderSkip,
  });
})();
