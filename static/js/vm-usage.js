// Live usage graphs of one VM: polls stats.json and turns cumulative counters
// (CPU time, disk and network bytes) into rates between two samples. Needs js/format.js and js/poll.js.
(function () {
  "use strict";
  const box = document.getElementById("vm-usage");
  if (!box || typeof Chart === "undefined") { return; }
  const status = document.getElementById("vm-usage-status");
  const stateLabel = document.getElementById("vm-state");
  const maxPoints = 60;
  const format = window.webkvmFormat;
  function line(label, color) { return { label: label, data: [], borderColor: color, tension: 0.2, pointRadius: 0 }; }
  const cpuChart = new Chart(document.getElementById("vm-cpu-chart"), {
    type: "line",
    data: { labels: [], datasets: [line(gettext("CPU %"), "#1f5fbf")] },
    options: { animation: false, scales: { y: { min: 0, max: 100 } } },
  });
  const ioChart = new Chart(document.getElementById("vm-io-chart"), {
    type: "line",
    data: { labels: [], datasets: [line(gettext("disk read KiB/s"), "#137a3b"), line(gettext("disk write KiB/s"), "#b54708"),
                                   line(gettext("net in KiB/s"), "#6941c6"), line(gettext("net out KiB/s"), "#c11574")] },
    options: { animation: false, scales: { y: { min: 0 } } },
  });
  let previous = null;
  function rate(now, before, key, scale) {
    if (!before || now[key] === null || before[key] === null || now.time <= before.time) { return null; }
    return Math.max(0, (now[key] - before[key]) / (now.time - before.time) / scale);
  }
  function push(chart, label, values) {
    chart.data.labels.push(label);
    values.forEach((v, i) => chart.data.datasets[i].data.push(v === null ? null : Math.round(v * 10) / 10));
    if (chart.data.labels.length > maxPoints) {
      chart.data.labels.shift();
      chart.data.datasets.forEach((d) => d.data.shift());
    }
    chart.update();
  }
  async function poll() {
    if (document.visibilityState === "hidden") { return null; }
    let response = null;
    try {
      response = await fetch(box.dataset.url, { credentials: "same-origin" });
      const s = await response.json();
      if (!response.ok) { throw new Error(s.error || response.statusText); }
      let cpu = rate(s, previous, "cpu_time_ns", 1e9);
      if (cpu !== null) { cpu = Math.min(100, 100 * cpu / Math.max(1, s.vcpus)); }
      const label = format.clock(s.time);
      push(cpuChart, label, [cpu]);
      push(ioChart, label, [rate(s, previous, "disk_read_bytes", 1024), rate(s, previous, "disk_write_bytes", 1024),
                            rate(s, previous, "net_rx_bytes", 1024), rate(s, previous, "net_tx_bytes", 1024)]);
      previous = s;
      const shown = stateLabel && (stateLabel.dataset.state || stateLabel.dataset.renderedState);
      if (stateLabel && document.documentElement.dataset.live !== "socket" && shown !== s.state) {
        // The live socket is down: these samples are the fallback for the state badge (static/js/vm-live.js).
        stateLabel.textContent = format.state(s.state);
        stateLabel.dataset.state = s.state;
        const notice = document.getElementById("vm-state-notice");
        if (notice) { notice.hidden = s.state === stateLabel.dataset.renderedState; }
      }
      status.textContent = cpu === null ? format.state(s.state)
        : interpolate(gettext("%(state)s, CPU %(cpu)s"), { state: format.state(s.state), cpu: format.percent(cpu) }, true);
      status.dataset.samples = String(cpuChart.data.labels.length);
    } catch (error) {
      const words = response && response.status === 429 ? gettext("paused: %(reason)s") : gettext("unavailable: %(reason)s");
      status.textContent = interpolate(words, { reason: error.message }, true);
    }
    return response;
  }
  window.webkvmPoll(poll, { every: 2000 }).start(true);
})();
