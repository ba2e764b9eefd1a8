/* Typed percentages <-> per-mille integers: the one rule for every page where a person types a share
 * (the workspace's split editor, the reviewer's adjudication editor).
 *
 * One decimal of a percent is one per-mille, so the conversion is exact string <-> integer
 * arithmetic, never floating point.
 *
 * lczPercent.parse(text) -> {value, error}: value the per-mille integer (0..1000) or null; error null
 *   or the reason it was refused, for the person ("one decimal at most").
 *   Read: "" or blanks (0), "12", "12.5", "12,5" (a comma is a decimal mark too), " 7 ", "12.5 %",
 *   and the half-typed "12." / ".5".
 *   Refused: anything but digits and one decimal mark ("abc", "-3", "1e2", "+4"), more than one
 *   decimal ("12.25": refused, never rounded, so what a person sees is what is saved), over 100 %.
 * lczPercent.format(pm) -> "12.5" (an integer of per-mille; negative ones get a "-").
 * lczPercent.TOTAL: 1000, a whole block.
 */
(function () {
  "use strict";

  const TOTAL = 1000;
  const NUMBER = /^(-?)(\d*)(?:[.,](\d*))?$/;

  const ok = (value) => ({ value, error: null });
  const refused = (error) => ({ value: null, error });

  function parse(text) {
    const t = String(text == null ? "" : text).trim();
    if (t === "") return ok(0);
    const m = NUMBER.exec(t.replace(/\s*%$/, ""));
    if (!m || (m[2] === "" && !m[3])) return refused("not a percentage");
    const [, minus, whole, decimals = ""] = m;
    if (minus) return refused("at least 0 %");
    if (decimals.length > 1) return refused("one decimal at most");
    const value = parseInt(whole || "0", 10) * 10 + parseInt(decimals || "0", 10);
    if (value > TOTAL) return refused("at most 100 %");
    return ok(value);
  }

  function format(pm) {
    const a = Math.abs(pm);
    return (pm < 0 ? "-" : "") + Math.floor(a / 10) + "." + (a % 10);
  }

  window.lczPercent = { TOTAL, parse, format };
})();
