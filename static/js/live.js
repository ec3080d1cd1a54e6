// Live updates for a page: the panel pushes changed VM rows over one WebSocket (/live/ws/?SCOPE);
// when it cannot connect, the page falls back to polling `fallbackUrl` (if any) every 5 s and keeps
// retrying the socket with back-off. onMessage receives {vms, added, removed, unreachable, full}.
window.webkvmLive = function (scope, onMessage, fallbackUrl) {
  "use strict";
  const POLL_MS = 5000;
  let delay = 1000;
  let pollTimer = null;

  async function poll() {
    if (document.visibilityState === "hidden") { return; }
    try {
      const response = await fetch(fallbackUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (response.ok) { onMessage(Object.assign({ polled: true }, await response.json())); }
    } catch (error) { /* the next poll or the socket will tell */ }
  }
  function startPolling() {
    if (fallbackUrl && pollTimer === null) { pollTimer = window.setInterval(poll, POLL_MS); }
  }
  function stopPolling() {
    if (pollTimer !== null) { window.clearInterval(pollTimer); pollTimer = null; }
  }
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
