/* The reviewer's adjudication page: the block on the imagery, the splits side by side, and the editor
 * of the final split.
 *
 * Configuration comes from #review-config (frontend.dashboard_views.review_block); Leaflet from
 * django-leaflet's static files; the map and its imagery from basemap.js; typed percentages are read
 * and written by percent.js (the workspace's rule); CSRF tokens and request ids from http.js. Each
 * adjudication is sent with a request_id, and the same adjudication sent again (after a lost answer)
 * keeps it, so it is recorded once.
 */
(function () {
  "use strict";

  const { esc } = window.lczDom;
  const { newMap, addScenes } = window.lczBasemap;
  const { TOTAL, parse, format } = window.lczPercent;
  const { uuid4, csrfToken } = window.lczHttp;

  /** The per-mille of a typed percentage, or null when it does not parse. */
  const valueOf = (input) => parse(input.value).value;

  function adjudicationPage(cfg) {
    const form = document.getElementById("adj-form");
    const inputs = Array.from(form.querySelectorAll("input.pct"));
    const reason = document.getElementById("reason");
    const submitBtn = document.getElementById("submit-btn");
    const totalCell = document.getElementById("editor-total");
    const totalLine = document.getElementById("total-line");
    const startedLabel = document.getElementById("started-from");
    const result = document.getElementById("result");
    const editorBar = document.getElementById("editor-bar");
    const subtotals = Array.from(form.querySelectorAll(".editor-subtotal"));
    const colourOf = Object.fromEntries(cfg.classes.map((c) => [c.key, c.colour]));
    const labelOf = Object.fromEntries(cfg.classes.map((c) => [c.key, `LCZ ${c.code}`]));
    const groupInputs = Array.from(form.querySelectorAll("tbody.group")).map(
      (tb) => Array.from(tb.querySelectorAll("input.pct")));
    let startedFrom = null;
    let pending = null; // {content, id}: the adjudication being sent and its request id
    let busy = false;
    let state = { valid: false, total: 0 };

    // the map: the block over the imagery, fitted
    const map = newMap("review-map", {}, cfg.blocks_attribution);
    addScenes(map, cfg.scenes);
    const outline = L.geoJSON(cfg.block.geometry, {
      style: { color: "#ffd400", weight: 3, fill: false, opacity: 1 }, interactive: false,
    }).addTo(map);
    map.fitBounds(outline.getBounds(), { padding: [30, 30], maxZoom: 20 });

    function read() {
      let total = 0, firstError = null;
      const values = {};
      for (const input of inputs) {
        const { value, error } = parse(input.value);
        input.closest("tr").classList.toggle("bad", !!error);
        input.setAttribute("aria-invalid", error ? "true" : "false");
        input.title = error ? `${labelOf[input.dataset.key]}: ${error}` : "";
        if (error) { firstError = firstError || input.title; continue; }
        values[input.dataset.key] = value;
        total += value;
      }
      return { values, total, valid: !firstError, error: firstError };
    }

    function update() {
      state = read();
      const pct = format(state.total);
      totalCell.textContent = pct;
      const exact = state.valid && state.total === TOTAL;
      totalCell.dataset.state = exact ? "ok" : "bad";
      groupInputs.forEach((group, i) => {
        const t = group.reduce((s, inp) => s + (valueOf(inp) || 0), 0);
        if (subtotals[i]) subtotals[i].textContent = format(t);
      });
      let msg, level;
      if (!state.valid) {
        msg = `${state.error}. Each class takes a percentage from 0 to 100 with at most one decimal.`; level = "bad";
      } else if (state.total !== TOTAL) {
        const d = format(Math.abs(TOTAL - state.total));
        msg = `Total ${pct} %: ${d} % ${state.total < TOTAL ? "short of" : "over"} 100.0 %.`; level = "bad";
      } else if (!reason.value.trim()) {
        msg = "Total 100.0 %. Give a reason to submit."; level = "warn";
      } else {
        msg = "Total 100.0 %. Ready to submit."; level = "ok";
      }
      totalLine.textContent = msg;
      totalLine.dataset.state = level;
      submitBtn.disabled = busy || !(exact && reason.value.trim());
      editorBar.innerHTML = inputs.map((inp) => {
        const v = valueOf(inp) || 0;
        return v ? `<span style="width: ${Math.min(v, TOTAL) / 10}%; background: ${colourOf[inp.dataset.key]}"` +
          ` title="${labelOf[inp.dataset.key]} ${format(v)} %"></span>` : "";
      }).join("");
    }

    function fill(permille) {
      inputs.forEach((inp, i) => { inp.value = format(permille[i]); });
    }

    function start(id) {
      if (id === "clear") {
        fill(inputs.map(() => 0));
        startedFrom = null;
        startedLabel.textContent = "nothing yet";
      } else {
        const s = cfg.starts.find((x) => x.id === id);
        if (!s) return;
        fill(s.permille);
        startedFrom = s.id;
        startedLabel.textContent = s.label;
      }
      form.querySelectorAll("[data-col]").forEach((th) => th.classList.remove("chosen"));
      form.querySelectorAll("button.start").forEach((b) => b.classList.toggle("chosen", b.dataset.start === id));
      update();
    }

    form.querySelectorAll("button.start").forEach((b) => b.addEventListener("click", () => start(b.dataset.start)));
    form.addEventListener("input", update);
    inputs.forEach((inp) => {
      inp.addEventListener("blur", () => {
        const v = valueOf(inp);
        if (v !== null) inp.value = format(v);
      });
    });

    function showResult(kind, html) {
      result.className = `banner ${kind}`;
      result.innerHTML = html;
      result.hidden = false;
    }

    function errorsHtml(body) {
      if (!body || typeof body !== "object") return "";
      const items = [];
      for (const [field, msgs] of Object.entries(body)) {
        const list = Array.isArray(msgs) ? msgs.join(" ") : String(msgs);
        items.push(`<li>${field === "detail" ? "" : `<b>${esc(field)}</b>: `}${esc(list)}</li>`);
      }
      return `<ul>${items.join("")}</ul>`;
    }

    function applyPayload(p) {
      const badge = document.getElementById("block-status");
      badge.textContent = p.status.charAt(0).toUpperCase() + p.status.slice(1);
      badge.dataset.status = p.status;
      document.getElementById("adjudicate").dataset.status = p.status;
      if (p.final) {
        for (const row of form.querySelectorAll("tr[data-class]")) {
          const cell = row.querySelector("td.final");
          if (cell) cell.textContent = format(p.final[row.dataset.class]);
        }
        form.querySelectorAll("tr.subtotal td.final").forEach((cell, i) => {
          const t = groupInputs[i].reduce((s, inp) => s + p.final[inp.dataset.key], 0);
          cell.textContent = format(t);
        });
        form.querySelector("tfoot td.final").textContent = "100.0";
      }
      const history = document.getElementById("history");
      if (p.adjudications && p.adjudications.length) {
        history.hidden = false;
        history.innerHTML = p.adjudications.map((j) =>
          `<li><strong>${esc(j.reviewer)}</strong> ${esc(String(j.at).slice(0, 16).replace("T", " "))}: ` +
          `${esc(j.reason)} <span class="muted">(started from ${esc(j.started_from)})</span></li>`).join("");
      }
    }

    async function submit() {
      update();
      if (submitBtn.disabled || busy) return;
      busy = true;
      submitBtn.disabled = true;
      submitBtn.textContent = "Saving …";
      const split = {};
      for (const key of cfg.keys) split[key] = state.values[key];
      const content = JSON.stringify({ split, reason: reason.value.trim(), started_from: startedFrom || "scratch" });
      // the same adjudication sent again (e.g. after a lost answer) keeps its request id: recorded once
      if (!pending || pending.content !== content) pending = { content, id: uuid4() };
      try {
        const res = await fetch(cfg.api, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
          body: JSON.stringify(Object.assign({ request_id: pending.id }, JSON.parse(content))),
        });
        let body = null;
        try { body = await res.json(); } catch (e) { body = null; }
        if (res.ok) {
          pending = null;
          applyPayload(body);
          const next = cfg.has_next
            ? `<a href="${esc(cfg.next)}" id="after-next">Next disputed block →</a> <kbd>n</kbd>`
            : `<a href="${esc(cfg.queue)}" id="after-next">No disputed block left: back to the queue</a>`;
          showResult("ok", `<strong>Adjudicated.</strong> The final split of ${esc(cfg.block.key)} is saved. ${next}`);
          document.getElementById("after-next").focus();
        } else if (res.status === 400) {
          showResult("error", `<strong>Not saved:</strong> ${errorsHtml(body)}`);
        } else if (res.status === 403 && body && /CSRF|credentials/i.test(body.detail || "")) {
          showResult("error", `<strong>Not saved:</strong> your session has expired. <a href="/accounts/login/?next=${
            encodeURIComponent(location.pathname)}">Log in again</a> (your split stays in this tab).`);
        } else {
          showResult("error", `<strong>Not saved</strong> (HTTP ${res.status}). ${errorsHtml(body)}`);
        }
      } catch (e) {
        showResult("error", `<strong>Not saved:</strong> the server could not be reached (${esc(e.message)}). Try again.`);
      } finally {
        busy = false;
        submitBtn.textContent = "Set final split";
        update();
      }
    }

    form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });

    /** Enter's action: submit when the split and the reason allow it, else make the total line say why. */
    function trySubmit() {
      if (!submitBtn.disabled) { submit(); return true; }
      totalLine.classList.remove("flash");
      void totalLine.offsetWidth;
      totalLine.classList.add("flash");
      return false;
    }

    update();
    // the keyboard (the workspace's keys) is review-keys.js's: it works through this handle
    window.lczReview = { cfg, map, outline, form, inputs, reason, start, update, trySubmit, state: () => state };
  }

  const cfg = document.getElementById("review-config");
  if (cfg) adjudicationPage(JSON.parse(cfg.textContent));
})();
