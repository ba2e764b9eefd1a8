/* Small DOM helpers every page script shares.
 *
 * lczDom.esc(s): text made safe for HTML (markup built as strings: popups, tooltips, legends).
 * lczDom.el(tag, attrs, ...kids): an element; attrs "class", "text", "on<event>" (a listener), else
 *   attributes (null/false ones left out, true ones empty).
 * lczDom.$(selector): document.querySelector.
 */
(function () {
  "use strict";

  const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (ch) => ENTITIES[ch]);

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid != null) node.append(kid);
    return node;
  }

  const $ = (sel) => document.querySelector(sel);

  window.lczDom = { esc, el, $ };
})();
