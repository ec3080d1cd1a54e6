// Live updates for a page: the panel pushes changed VM rows over one WebSocket (/live/ws/?SCOPE);
// when it cannot connect, the page falls back to polling `fallbackUrl` (if any) every 5 s and keeps
// retrying the socket with back-off. onMessage receives {vms, added, removed, unreachable, full}.
// Needs js/poll.js (polling pauses when the panel answers 429).
window.webkvmLive = function (scope, onMessage, fallbackUrl) {
  "use strict";
  const POLL_MS = 5000;
  let delay = 1000;

  async function poll() {
    if (document.visibilityState === "hidden") { return null; }
    const response = await fetch(fallbackUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } });
    if (response.ok) { onMessage(Object.assign({ polled: true }, await response.json())); }
    return response;
  }
  const poller = window.webkvmPoll(poll, { every: POLL_MS });
  function startPolling() {
    if (fallbackUrl) { poller.start(false); }
  }
  function stopPolling() { poller.stop(); }
  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/live/ws/?" + scope;
    let socket;
    try { socket = new WebSocket(url); } catch (error) { startPolling(); return; }
    socket.onopen = function () { delay = 1000; stopPolling(); document.documentElement.dataset.live = "socket"; };
    socket.onmessage = function (event) {
      try { onMessage(JSON.parse(event.data)); } catch (error) { /* a malformed message changes nothing */ }
    };
    socket.onclose = function (event) {
      document.documentElement.dataset.live = "polling";
      startPolling();
      if (event.code === 4403) { return; }  // refused (logged out): polling will show the login page's refusal
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
};
