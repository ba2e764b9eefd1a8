/* What every page that writes to the API shares: the CSRF token and idempotency keys.
 *
 * lczHttp.csrfToken(): the csrftoken cookie (fresh after a login in another tab), else the page's
 *   <meta name="csrf-token">.
 * lczHttp.uuid4(): a random UUID string (request ids: a retried request reuses its id).
 */
(function () {
  "use strict";

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (m) return decodeURIComponent(m[1]);
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  window.lczHttp = { uuid4, csrfToken };
})();
