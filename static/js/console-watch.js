// The console pages' safety net, a classic script that runs before their module: a script of the page
// that fails to load (noVNC, xterm.js, the page's own module) or throws while starting would leave the
// status on "loading…" for ever. Until the module says it started (data-started on the console's root),
// any such failure, or no start within START_DEADLINE_MS, is shown, and Reconnect reloads the page: a
// module that failed once stays failed in this document.
(function () {
  "use strict";
  const START_DEADLINE_MS = 15000;
  // The catalog (/jsi18n/) is a script too: when it did not load, say it in English.
  const gettext = window.gettext || function (text) { return text; };
  const interpolate = window.interpolate || function (format, obj) {
    return format.replace(/%\((\w+)\)s/g, function (match, name) { return String(obj[name]); });
  };
  const root = document.querySelector("[data-ticket-url]");
  if (!root) { return; }
  const status = root.querySelector(".console-status");
  const reconnect = root.querySelector("[data-reconnect]");
  let failed = false;

  function fail(words) {
    if (failed || root.dataset.started) { return; }
    failed = true;
    status.textContent = interpolate(gettext("not connected: %(reason)s"), { reason: words }, true);
    status.dataset.state = "failed";
    root.dataset.state = "failed";
    reconnect.hidden = false;
    reconnect.addEventListener("click", function () { window.location.reload(); });
  }

  // Capture: a <script> that fails to load fires "error" on itself, which does not bubble.
  window.addEventListener("error", function (event) {
    const target = event.target;
    if (target && target.tagName === "SCRIPT") {
      const name = (target.src || "").split("/").pop();
      fail(interpolate(gettext("a script of this page (%(name)s) did not load; reload to try again"), { name: name }, true));
    } else if (event.message) {
      fail(interpolate(gettext("a script of this page did not load: %(reason)s"), { reason: event.message }, true));
    }
  }, true);
  setTimeout(function () {
    fail(interpolate(gettext("the console's scripts did not load within %(seconds)s s; reload to try again"),
                     { seconds: START_DEADLINE_MS / 1000 }, true));
  }, START_DEADLINE_MS);
}());
