/* The guidelines panel (key m, the "Guidelines" button): the campaign's own guidelines (sanitised
 * HTML from the server: annotator.guidelines) and the 17 classes, each with its colour, key, name,
 * description and example images (the campaign's own pure blocks, else the demo's synthetic ones).
 *
 * The data comes from GET /api/campaigns/{id}/guidelines/ on first opening. While the panel is open it
 * takes every key before the workspace does (capture phase): Esc or m closes it, focus returns to
 * where it was; other keys never reach the split editor behind it.
 */
(function () {
  "use strict";

  const { el, $ } = window.lczDom;
  const panel = $("#guidelines");
  if (!panel) return;
  const card = panel.querySelector(".gl-card");
  const textBox = $("#guidelines-text");
  const grid = $("#guidelines-classes");
  const status = $("#guidelines-status");
  let loading = null;
  let loaded = false;
  let returnTo = null;

  function renderClass(c) {
    const examples = el("div", { class: "gl-examples" });
    for (const ex of c.examples) {
      const title = ex.source === "campaign"
        ? `Block ${ex.block_key}: ${(ex.share / 10).toFixed(0)} % ${c.label} (this campaign)`
        : "Synthetic example (demo imagery)";
      examples.append(el("figure", { class: `gl-example ${ex.source}`, title },
        el("img", { src: ex.url, alt: ex.alt, loading: "lazy", decoding: "async", width: "96", height: "96" }),
        el("figcaption", { text: ex.source === "campaign" ? ex.block_key : "synthetic" })));
    }
    return el("section", { class: "gl-class", "data-class": c.key, "aria-label": `${c.label} ${c.name}` },
      el("header", {},
        el("i", { class: "gl-swatch", style: `background: ${c.colour}`, "aria-hidden": "true" }),
        el("kbd", { text: c.keyboard, title: `Key ${c.keyboard} picks ${c.label}` }),
        el("strong", { text: c.label }), " ", el("span", { class: "gl-name", text: c.name })),
      el("p", { class: "gl-desc", text: c.description }),
      examples);
  }

  function render(body) {
    // guidelines_html is sanitised on the server (markdown + nh3 allow-list): no script or handler survives
    textBox.innerHTML = body.guidelines_html ||
      '<p class="muted">This campaign has no written guidelines yet; the class descriptions below apply.</p>';
    const own = body.classes.some((c) => c.examples.some((e) => e.source === "campaign"));
    grid.replaceChildren(...body.classes.map(renderClass));
    status.textContent = own
      ? `Examples: this campaign's blocks that are at least ${body.pure_threshold / 10} % one class (best agreement first); synthetic ones where it has none yet.`
      : "Examples: synthetic (painted demo imagery) until this campaign has blocks agreed to be at least 90 % one class.";
    loaded = true;
    panel.dataset.loaded = "true";
  }

  function load() {
    if (loaded) return Promise.resolve();
    if (!loading) {
      status.textContent = "Loading …";
      loading = fetch(panel.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); return r.json(); })
        .then(render)
        .catch((err) => { status.textContent = `The guidelines could not be loaded (${err.message}); m again retries.`; })
        .finally(() => { loading = null; });
    }
    return loading;
  }

  const isOpen = () => !panel.hidden;

  function open() {
    if (isOpen()) return;
    returnTo = document.activeElement;
    panel.hidden = false;
    $("#guidelines-close").focus();
    load();
  }

  function close() {
    if (!isOpen()) return;
    panel.hidden = true;
    const back = returnTo;
    returnTo = null;
    if (back && back !== document.body && document.contains(back)) back.focus({ preventScroll: true });
  }

  const toggle = (show) => ((show == null ? !isOpen() : show) ? open() : close());

  $("#guidelines-btn").addEventListener("click", () => toggle());
  $("#guidelines-close").addEventListener("click", close);
  panel.addEventListener("click", (e) => { if (e.target === panel) close(); });

  // While open, the panel has the keyboard: Esc and m close it; Tab stays inside it; nothing else
  // reaches the workspace (a class key must not change the split behind the panel).
  window.addEventListener("keydown", (e) => {
    if (!isOpen() || e.isComposing) return;
    const plain = !e.ctrlKey && !e.metaKey && !e.altKey;
    if (e.key === "Escape" || (plain && e.key === "m")) {
      e.preventDefault();
      e.stopImmediatePropagation();
      close();
      return;
    }
    if (e.key === "Tab") {
      const focusable = [...card.querySelectorAll("a[href], button")];
      const first = focusable[0], last = focusable[focusable.length - 1];
      if (!card.contains(document.activeElement)) { e.preventDefault(); first.focus(); }
      else if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
      else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
    }
    e.stopPropagation();   // the page's own keys stay quiet; the browser's defaults (scrolling) still work
  }, true);

  const api = { open, close, toggle, isOpen, load };
  window.lczGuidelines = api;
  if (window.lczWorkspace) window.lczWorkspace.toggleGuidelines = toggle;
})();
