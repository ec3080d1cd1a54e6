// Live fleet table: rows change in place as the panel pushes them (static/js/live.js), with rows.json
// polling as the fallback. A VM that appears or disappears shows a "reload" notice rather than
// reshuffling the table; a host that stops answering gets its own row, which leaves when it answers.
(function () {
  "use strict";
  const table = document.getElementById("fleet");
  if (!table || !window.webkvmLive) { return; }
  const notice = document.getElementById("fleet-notice");
  const filters = new URLSearchParams(window.location.search);
  const url = new URL(table.dataset.rowsUrl, window.location.href);
  for (const [key, value] of filters) { if (!url.searchParams.has(key)) { url.searchParams.set(key, value); } }
  const stateClass = { "running": "up", "paused": "paused", "shut off": "off", "crashed": "down" };
  const columns = table.querySelectorAll("thead th").length;

  function kib(value) {
    if (value === null || value === undefined) { return "unknown"; }
    const mib = value / 1024;
    return mib >= 1024 ? +(mib / 1024).toPrecision(3) + " GiB" : +mib.toPrecision(4) + " MiB";
  }
  function ago(epoch) {
    if (epoch === null || epoch === undefined) { return ""; }
    const s = Math.max(0, Math.floor(Date.now() / 1000 - epoch));
    if (s >= 86400) { return Math.floor(s / 86400) + " d"; }
    if (s >= 3600) { return Math.floor(s / 3600) + " h"; }
    if (s >= 60) { return Math.floor(s / 60) + " min"; }
    return s + " s";
  }
  function set(row, col, text) {
    const cell = row.querySelector('[data-col="' + col + '"]');
    if (cell && cell.textContent !== text) { cell.textContent = text; }
    return cell;
  }
  function update(row, vm) {
    const state = set(row, "state", vm.state);
    if (state) { state.className = "vmstate " + (stateClass[vm.state] || "other"); }
    set(row, "since", ago(vm.state_since));
    set(row, "vcpus", String(vm.vcpus));
    set(row, "memory", kib(vm.memory_kib));
    set(row, "cpu", vm.cpu_percent === null ? "" : vm.cpu_percent + " %");
    set(row, "autostart", vm.autostart ? "yes" : "no");
  }
  function hostWords(host, words) {
    let row = table.querySelector('tbody tr.unreachable[data-host="' + CSS.escape(host) + '"]');
    if (!words) { if (row) { row.remove(); } return; }
    if (!row) {
      row = document.createElement("tr");
      row.className = "unreachable";
      row.dataset.host = host;
      const cell = document.createElement("td");
      cell.colSpan = columns;
      row.appendChild(cell);
      table.tBodies[0].prepend(row);
    }
    row.cells[0].className = "state " + (words.startsWith("busy") ? "busy" : "down");
    row.cells[0].textContent = host + ": " + words;
  }
  const rows = new Map();
  for (const row of table.querySelectorAll("tbody tr[data-key]")) { rows.set(row.dataset.key, row); }

  function apply(data) {
    for (const [key, vm] of Object.entries(data.vms || {})) {
      const row = rows.get(key);
      if (row) { update(row, vm); }
    }
    if (data.polled) {
      // rows.json answers with this page's rows exactly: a difference is a VM added or removed.
      const keys = Object.keys(data.vms);
      if (keys.some((key) => !rows.has(key)) || [...rows.keys()].some((key) => !(key in data.vms))) { notice.hidden = false; }
    } else if ((data.added || []).length || (data.removed || []).some((key) => rows.has(key))) {
      notice.hidden = false;
    }
    for (const [host, words] of Object.entries(data.unreachable || {})) { hostWords(host, words); }
    table.dataset.updated = String(Date.now());
  }
  window.webkvmLive(table.dataset.liveScope, apply, url.toString());
})();
