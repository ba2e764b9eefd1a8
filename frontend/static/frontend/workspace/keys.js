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

  const confidenceKey = (e) => e.shiftKey && /^Digit[1-5]$/.test(e.code);   // Shift+1..5

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const t = e.target;
    const helpOpen = !$("#help").hidden;
    if (helpOpen) {
      if (e.key === "Escape" || e.key === "?") { e.preventDefault(); toggleHelp(false); }
      return;
    }
    const inPct = t.classList && t.classList.contains("pct");
    const inText = !inPct && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && /^(text|search|password|email)$/.test(t.type)));
    const onControl = t.tagName === "INPUT" && !inPct && !inText;   // slider, radio, checkbox

    if (e.key === "Escape") {
      e.preventDefault();
      if (ed.open && (inPct || inText || onControl || t.tagName === "BUTTON")) {
        t.blur();
        $("#editor").focus({ preventScroll: true });
      } else if (ed.open) {
        W.closeEditor();
      }
      return;
    }
    if (inText) return;                           // the comment: plain typing
    if (e.key === "Enter") {
      if (t.tagName === "BUTTON" || t.tagName === "A") return;   // let buttons be pressed
      if (ed.open) { e.preventDefault(); W.submit(); }
      return;
    }
    if (inPct) {
      const i = Number(t.dataset.index);
      if (e.key === "ArrowUp" || e.key === "ArrowDown") {
        e.preventDefault();
        const step = (e.shiftKey ? 1 : 10) * (e.key === "ArrowUp" ? 1 : -1);
        W.setValue(i, (ed.bad.has(i) ? 0 : ed.pm[i]) + step);
        t.select();
        return;
      }
      if (e.key.length === 1 && !/[0-9.,]/.test(e.key) && !confidenceKey(e)) {
        e.preventDefault();                       // nothing but digits and a decimal mark is typed here
        const k = e.key.toLowerCase();
        if (k === "r") W.putRemainder(i);
        else if (KEY_TO_CLASS.has(k)) W.chooseClass(KEY_TO_CLASS.get(k), true);
        else if (k === "n") W.goNext();
        else if (k === "?") toggleHelp(true);
        return;
      }
      if (!confidenceKey(e)) return;              // digits, dot, editing keys: typing
    }
    if (confidenceKey(e) && ed.open && !ed.locked) {
      e.preventDefault();
      W.setConfidence(Number(e.code.slice(5)));
      return;
    }
    if (e.key === "?") { e.preventDefault(); toggleHelp(true); return; }
    if ((e.key === "ArrowRight" && !onControl) || e.key === "n") { e.preventDefault(); W.goNext(); return; }
    if (!ed.open || ed.locked) return;
    const k = e.key.toLowerCase();
    if (e.key.length === 1 && KEY_TO_CLASS.has(k) && !e.shiftKey) {
      e.preventDefault();
      W.chooseClass(KEY_TO_CLASS.get(k), true);
    } else if (k === "r") {
      e.preventDefault();
      W.putRemainder(ed.cls);
    }
  });

  Object.assign(W, { toggleHelp });
})();
