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
        input.addEventListener("focus", () => chooseClass(i, false));
        input.addEventListener("blur", () => { if (!ed.bad.has(i)) input.value = fmtInput(ed.pm[i]); });
        slider.addEventListener("input", () => { setValue(i, parseInt(slider.value, 10)); });
        rest.addEventListener("click", () => { putRemainder(i); });
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
    $("#comment").addEventListener("input", (e) => { ed.comment = e.target.value; changed(); });
    $("#split-form").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
    $("#ed-close").addEventListener("click", () => closeEditor());
    $("#ed-next").addEventListener("click", () => goNext());
    $("#next-btn").addEventListener("click", () => goNext());
  }

  function onPctInput(i) {
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

  function chooseClass(i, focus) {
    ed.cls = i;
    rows.forEach((r, k) => r.row.classList.toggle("chosen", k === i));
    if (focus) {
      const input = rows[i].input;
      if (document.activeElement !== input) input.focus({ preventScroll: false });
      input.select();
      rows[i].row.scrollIntoView({ block: "nearest" });
    }
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
    $("#total").textContent = format(t) + " %";
    const diff = $("#diff");
    if (ed.bad.size) {
      const [i, msg] = ed.bad.entries().next().value;
      diff.textContent = `LCZ ${CLASSES[i].code}: ${msg}`;
      diff.dataset.state = "bad";
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
    $("#submit-btn").textContent = ed.submitted ? "Submit again ⏎" : "Submit ⏎";
  }

  function renderEditorState() {
    $("#conflict").hidden = !ed.conflict;
    $("#ed-readonly").hidden = !ed.locked;
    const status = ed.locked ? W.blockStatus(ed.blockId) || "complete"
      : ed.submitted ? "submitted" : versions.get(ed.id) ? "draft" : "todo";
    const badge = $("#ed-status");
    badge.textContent = (STATUS[status] || STATUS.todo).label;
    badge.dataset.status = status;
    for (const r of rows) { r.input.disabled = r.slider.disabled = r.rest.disabled = ed.locked; }
    for (const node of document.querySelectorAll("#confidence input, #flags input, #comment")) node.disabled = ed.locked;
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
    ed.seq = ed.savedSeq = ++seqCounter;
    ed.submitted = !!(a.annotation && a.annotation.submitted);
    ed.conflict = false;
    ed.locked = !!(ed.submitted && LOCKED.has(W.blockStatus(ed.blockId)));
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
    renderEditorState();
  }

  // ---------------------------------------------------------------- open, close, next, submit
  async function fetchAssignment(aid) {
    const res = await fetch(W.url(CFG.api.assignment, aid), { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(res.status === 404 ? "That block is not assigned to you." : `HTTP ${res.status}`);
    return res.json();
  }

  async function openAssignment(aid, { fly = true, data = null } = {}) {
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
    openEditorWith(a, fly);
  }

  function openEditorWith(a, fly) {
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
      // a draft queued for the block we are leaving must reach the server first, or "next" (which
      // resumes drafts first) would not know about it
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
        // "next" resumes drafts first, so it can hand back the block we are on: take the next
        // of my open blocks on the map instead
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
      return;
    }
    submitting = true;
    $("#submit-btn").disabled = true;
    W.cancelAutosave();
    const aid = ed.id;
    const blockId = ed.blockId;
    try {
      const r = await W.enqueue(aid, blockId, W.snapshot(), true, ed.seq);
      if (r.ok && ed.id === aid) {
        W.refreshProgress();
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
    fetchAssignment, openAssignment, openEditorWith, closeEditor, goNext, submit,
  });
})();
