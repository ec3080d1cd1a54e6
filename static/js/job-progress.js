// The progress of one job, for every kind: the panel pushes the job's JSON over a WebSocket
// (/jobs/ws/ID/, data-socket) at each change until it ends; where the socket cannot connect, the page
// polls the same JSON (data-url) every second. Shows state, phase, done/total (bytes when
// data-unit="bytes"), the result and whether Cancel applies.
// Needs js/format.js and js/poll.js. Markup: jobs/templates/jobs/detail.html.
(function () {
  "use strict";
  const box = document.getElementById("job");
  if (!box) { return; }
  const format = window.webkvmFormat;
  const iec = format.iec;
  const part = (name) => box.querySelector('[data-job="' + name + '"]');

  function amount(s) {
    if (!s.total) { return ""; }
    const size = s.unit === "bytes" ? iec : String;
    return interpolate(gettext("%(done)s of %(total)s"), { done: size(s.done), total: size(s.total) }, true);
  }

  function show(s) {
    box.dataset.state = s.state;
    part("state").textContent = format.jobState(s.state);  // data-state keeps the state's name
    const bar = part("bar");
    if (s.percent === null) { bar.removeAttribute("value"); } else { bar.value = s.percent; }
    bar.hidden = !s.active && s.state !== "done";
    part("amount").textContent = amount(s);
    part("phase").textContent = s.active ? s.phase : "";
    part("seconds").textContent = s.seconds === null ? "" : format.seconds(s.seconds);
    part("result").textContent = s.result;
    part("cancel").hidden = !s.can_cancel;
    if (!s.active && s.link) { part("href").href = s.link; part("link").hidden = false; }
  }

  async function poll() {
    let response = null;
    try {
      response = await fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) { throw new Error(response.status + " " + response.statusText); }
      const s = await response.json();
      show(s);
      if (!s.active) { return false; }
      part("problem").textContent = "";
    } catch (error) {
      part("problem").textContent = interpolate(gettext("Could not ask the panel: %(reason)s"), { reason: error.message }, true);
      if (response === null) { throw error; }
    }
    return response;  // a 429 pauses the polling (js/poll.js)
  }
  const poller = window.webkvmPoll(poll, { every: 1000, failed: 3000 });

  function follow() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + box.dataset.socket;
    let socket, ended = false;
    try { socket = new WebSocket(url); } catch (error) { poller.start(true); return; }
    socket.onopen = function () { box.dataset.live = "socket"; };
    socket.onmessage = function (event) {
      let s;
      try { s = JSON.parse(event.data); } catch (error) { return; }
      show(s);
      part("problem").textContent = "";
      ended = !s.active;
    };
    socket.onclose = function () {
      if (ended) { return; }
      box.dataset.live = "polling";
      poller.start(true);  // refused, dropped or never opened: the JSON tells the rest
    };
  }

  if (box.dataset.active === "true") { follow(); }
}());
