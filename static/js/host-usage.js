// Live CPU and memory graph of one host: polls the usage endpoint and turns
// cumulative CPU times into a percentage between two samples. Needs js/poll.js.
(function () {
  "use strict";
  const box = document.getElementById("usage");
  if (!box || typeof Chart === "undefined") { return; }
  const status = document.getElementById("usage-status");
  const maxPoints = 60;
  const chart = new Chart(document.getElementById("usage-chart"), {
    type: "line",
    data: { labels: [], datasets: [
      { label: "CPU %", data: [], borderColor: "#1f5fbf", tension: 0.2, pointRadius: 0 },
      { label: "Memory %", data: [], borderColor: "#137a3b", tension: 0.2, pointRadius: 0 },
    ] },
    options: { animation: false, scales: { y: { min: 0, max: 100 } } },
  });
  let previous = null;
  async function poll() {
    if (document.visibilityState === "hidden") { return null; }
    let response = null;
    try {
      response = await fetch(box.dataset.url, { credentials: "same-origin" });
      const sample = await response.json();
      if (!response.ok) { throw new Error(sample.error || response.statusText); }
      let cpu = null;
      if (previous && sample.cpu_total_ns !== null && sample.cpu_total_ns > previous.cpu_total_ns) {
        cpu = 100 * (sample.cpu_busy_ns - previous.cpu_busy_ns) / (sample.cpu_total_ns - previous.cpu_total_ns);
      }
      const memory = sample.memory_total ? 100 * sample.memory_used / sample.memory_total : null;
      previous = sample;
      chart.data.labels.push(new Date(sample.time * 1000).toLocaleTimeString());
      chart.data.datasets[0].data.push(cpu === null ? null : Math.round(cpu * 10) / 10);
      chart.data.datasets[1].data.push(memory === null ? null : Math.round(memory * 10) / 10);
      if (chart.data.labels.length > maxPoints) {
        chart.data.labels.shift();
        chart.data.datasets.forEach((d) => d.data.shift());
      }
      chart.update();
      status.textContent = "CPU " + (cpu === null ? "…" : cpu.toFixed(1) + " %") +
        ", memory " + (memory === null ? "unknown" : memory.toFixed(1) + " %");
      status.dataset.samples = String(chart.data.labels.length);
    } catch (error) {
      status.textContent = (response && response.status === 429 ? "paused: " : "unreachable: ") + error.message;
    }
    return response;
  }
  window.webkvmPoll(poll, { every: 2000 }).start(true);
})();
