// Live fleet table: polls rows.json every second and updates state, CPU and memory in place.
// A VM that appears or disappears shows a "reload" notice rather than reshuffling the table.
(function () {
  "use strict";
  const table = document.getElementById("fleet");
  if (!table) { return; }
  const notice = document.getElementById("fleet-notice");
  const filters = new URLSearchParams(window.location.search);
  const url = new URL(table.dataset.rowsUrl, window.location.href);
  for (const [key, value] of filters) { if (!url.searchParams.has(key)) { url.searchParams.set(key, value); } }
  const stateClass = { "running": "up", "paused": "paused", "shut off": "off", "crashed": "down" };

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

  async function poll() {
    if (document.visibilityState === "hidden") { return; }
    let data;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (!response.ok) { return; }
      data = await response.json();
    } catch (error) { return; }
    const seen = new Set();
    for (const row of table.querySelectorAll("tbody tr[data-key]")) {
      const vm = data.vms[row.dataset.key];
      if (!vm) { notice.hidden = false; continue; }
      seen.add(row.dataset.key);
      const state = set(row, "state", vm.state);
      state.className = "vmstate " + (stateClass[vm.state] || "other");
      set(row, "since", ago(vm.state_since));
      set(row, "vcpus", String(vm.vcpus));
      set(row, "memory", kib(vm.memory_kib));
      set(row, "cpu", vm.cpu_percent === null ? "" : vm.cpu_percent + " %");
      set(row, "autostart", vm.autostart ? "yes" : "no");
    }
    if (Object.keys(data.vms).some((key) => !seen.has(key))) { notice.hidden = false; }
    table.dataset.updated = String(Date.now());
  }
  window.setInterval(poll, 1000);
})();
