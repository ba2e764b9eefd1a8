/* The workspace's save queue (see core.js for the parts).
 *
 * Saves go through one serial queue: each distinct save gets a fresh request_id; a save that failed
 * on the network is retried with the SAME request_id and version (the server replays it if it had
 * been applied), and newer edits wait behind it. 409 = the split was changed elsewhere: the banner
 * offers to reload the saved version. Also here: autosave, the save state line and the progress bar
 * (which follows saves).
 */
(function () {
  "use strict";

  const W = window.lczWorkspace;
  const { CFG, TOTAL, ed, versions, total, draftable } = W;
  const { uuid4, csrfToken } = window.lczHttp;
  const { $ } = window.lczDom;
  const AUTOSAVE_MS = 1500;

  const queue = [];          // {aid, blockId, body, submit, seq, requestId, version, sent, resolve, promise}
  let pumping = false;
  let offline = false;
  let loggedOut = false;
  let retryDelay = 1000;
  let autosaveTimer = null;

  function enqueue(aid, blockId, body, submit, seq) {
    if (!submit) {
      // an unsent draft of the same assignment is simply replaced by the newer one
      const waiting = queue.find((q) => q.aid === aid && !q.sent && !q.submit);
      if (waiting) { waiting.body = body; waiting.seq = seq; return waiting.promise; }
    }
    const item = { aid, blockId, body, submit, seq, requestId: uuid4(), version: null, sent: false };
    item.promise = new Promise((resolve) => { item.resolve = resolve; });
    queue.push(item);
    pump();
    renderSaveState();
    return item.promise;
  }

  const pendingFor = (aid) => queue.filter((q) => q.aid === aid);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function pump() {
    if (pumping) return;
    pumping = true;
    try {
      while (queue.length) {
        const item = queue[0];
        if (!item.sent) {                      // frozen from the first send on: a retry is the same request
          item.version = versions.has(item.aid) ? versions.get(item.aid) : 0;
          item.sent = true;
          item.payload = JSON.stringify({ request_id: item.requestId, version: item.version,
                                          submit: item.submit, ...item.body });
        }
        renderSaveState();
        let res = null;
        try {
          res = await fetch(W.url(CFG.api.annotation, item.aid), {
            method: "PUT", credentials: "same-origin", body: item.payload,
            headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
          });
        } catch (err) {
          res = null;
        }
        const sessionGone = !!res && (res.status === 401 || (res.status === 403 && await loginNeeded(res)));
        if (res === null || res.status >= 500 || res.status === 429 || sessionGone) {
          // network down, server trouble, or logged out: keep the request, retry it unchanged
          offline = res === null ? "offline" : res.status >= 500 || res.status === 429 ? "server" : false;
          loggedOut = sessionGone;
          renderSaveState();
          await sleep(retryDelay);
          retryDelay = Math.min(retryDelay * 2, 30000);
          continue;
        }
        offline = loggedOut = false;
        retryDelay = 1000;
        queue.shift();
        let data = null;
        try { data = await res.json(); } catch (err) { data = null; }
        if (res.ok) {
          versions.set(item.aid, data.version);
          onSaved(item, data);
          item.resolve({ ok: true, annotation: data });
        } else if (res.status === 409) {
          for (const other of pendingFor(item.aid)) {            // all built on a stale version
            queue.splice(queue.indexOf(other), 1);
            other.resolve({ ok: false, conflict: true });
          }
          if (item.aid === ed.id) { ed.conflict = true; W.renderEditorState(); }
          else W.toast("A saved draft of another block was changed elsewhere; open it to reload.");
          item.resolve({ ok: false, conflict: true, current: data && data.current });
        } else {
          // refused for good (a revoked assignment, a non-member): no more drafts of it are sent
          if (res.status === 403 && item.aid === ed.id) ed.refused = true;
          if (item.aid === ed.id) W.showErrors(data && typeof data === "object" ? data : { detail: `HTTP ${res.status}` });
          else W.toast(`A save was refused (HTTP ${res.status}).`);
          item.resolve({ ok: false, errors: data });
        }
        renderSaveState();
      }
    } finally {
      pumping = false;
      renderSaveState();
    }
  }

  function onSaved(item, ann) {
    const status = ann.submitted ? (ann.skip_reason ? "skipped" : "submitted") : "draft";
    W.setBlockStatus(item.blockId, status);
    if (item.aid === ed.id) {
      ed.savedSeq = Math.max(ed.savedSeq, item.seq);
      ed.submitted = ann.submitted;
      W.showErrors(null);
      W.renderEditorState();
    }
    refreshProgressSoon();
  }

  function scheduleAutosave() {
    cancelAutosave();
    if (draftable()) autosaveTimer = setTimeout(saveDraftNow, AUTOSAVE_MS);
    renderSaveState();
  }
  function cancelAutosave() {
    clearTimeout(autosaveTimer);
    autosaveTimer = null;
  }

  /** Send the current edits as a draft now (if there are any and they can be a draft). */
  function saveDraftNow() {
    cancelAutosave();
    if (!ed.open || ed.seq === ed.savedSeq || !draftable()) { renderSaveState(); return null; }
    if (pendingFor(ed.id).some((q) => q.seq >= ed.seq)) return null;
    return enqueue(ed.id, ed.blockId, W.snapshot(), false, ed.seq);
  }

  function saveStateText() {
    if (loggedOut) return { text: "Logged out: log in again in another tab, will retry", cls: "bad" };
    if (offline === "offline") return { text: "Offline, will retry", cls: "bad" };
    if (offline) return { text: "Server busy, will retry", cls: "bad" };
    if (ed.open) {
      if (ed.conflict) return { text: "Not saved: changed elsewhere", cls: "bad" };
      if (pendingFor(ed.id).length) return { text: "Saving…", cls: "busy" };
      if (ed.seq !== ed.savedSeq) {
        if (ed.locked) return { text: "Read only", cls: "" };
        if (ed.bad.size) return { text: "Not saved: fix the marked value", cls: "bad" };
        if (ed.submitted) return { text: "Changed: submit again to keep", cls: "warn" };
        if (total() > TOTAL) return { text: "Not saved: over 100 %", cls: "bad" };
        return { text: "Unsaved changes", cls: "busy" };
      }
      if (ed.submitted) return { text: "Submitted", cls: "ok" };
      if (versions.get(ed.id)) return { text: "Saved", cls: "ok" };
      return { text: "", cls: "" };
    }
    if (queue.length) return { text: "Saving…", cls: "busy" };
    return { text: "", cls: "" };
  }
  function renderSaveState() {
    const s = saveStateText();
    for (const node of [$("#save-state"), $("#ed-save-state")]) {
      node.textContent = s.text;
      node.dataset.state = s.cls;
    }
  }

  /** A 403 that a new login would cure (session expired, CSRF token gone), not a refusal such as a
   * revoked assignment: that one is answered like any other refused save, never retried. */
  async function loginNeeded(res) {
    try {
      const body = await res.clone().json();
      return /CSRF|credentials/i.test((body && body.detail) || "");
    } catch (err) {
      return true; // not the API's JSON (e.g. a proxy's login page): assume the session is gone
    }
  }

  window.addEventListener("beforeunload", (e) => {
    saveDraftNow();
    if (queue.length) { e.preventDefault(); e.returnValue = ""; }
  });
  document.addEventListener("visibilitychange", () => { if (document.hidden) saveDraftNow(); });

  /** The 409 banner's way out: the saved version replaces the edits. */
  async function reloadSaved() {
    if (!ed.id) return;
    const aid = ed.id;
    try {
      const a = await W.fetchAssignment(aid);
      versions.set(aid, a.annotation ? a.annotation.version : 0);
      if (ed.id === aid) {
        W.fillEditor(a, a.annotation);
        $("#editor").focus({ preventScroll: true });
        W.toast("Reloaded the saved version.");
      }
    } catch (err) {
      W.toast("Could not reload: " + err.message);
    }
  }
  $("#reload-btn").addEventListener("click", () => reloadSaved());

  // ---------------------------------------------------------------- the progress bar
  let progressTimer = null;
  function refreshProgressSoon() { clearTimeout(progressTimer); progressTimer = setTimeout(refreshProgress, 300); }
  async function refreshProgress() {
    try {
      const res = await fetch(CFG.api.progress, { credentials: "same-origin" });
      if (!res.ok) return;
      const p = await res.json();
      const node = $("#progress");
      const pct = p.assigned ? (100 * p.submitted) / p.assigned : 0;
      node.querySelector(".fill").style.width = pct + "%";
      node.querySelector(".label").textContent =
        `${p.submitted} / ${p.assigned} done` + (p.skipped ? ` (${p.skipped} can't label)` : "") +
        (p.draft ? ` · ${p.draft} draft${p.draft > 1 ? "s" : ""}` : "");
      node.setAttribute("aria-valuenow", String(p.submitted));
      node.setAttribute("aria-valuemax", String(p.assigned));
      node.title = `${p.submitted} submitted (${p.skipped || 0} of them can't label), ${p.draft} drafts, ${p.todo} to do, ` +
        `of ${p.assigned} assigned to you`;
    } catch (err) { /* offline: the next save refreshes it */ }
  }

  Object.assign(W, {
    queue, enqueue, pendingFor, scheduleAutosave, cancelAutosave, saveDraftNow, renderSaveState,
    refreshProgress, isOffline: () => !!offline,
  });
})();
