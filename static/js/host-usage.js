// Live CPU and memory graph of one host: polls the usage endpoint and turns
// cumulative CPU times into a percentage between two samples. The memory figures are the server's
// (virt/hostinfo.py memory()), shown as they come in the graph and the overview's facts alike.
// Needs js/format.js and js/poll.js.
(function () {
  "use strict";
  const box = document.getElementById("usage");
  if (!box || typeof Chart === "undefined") { return; }
  const format = window.webkvmFormat;
  const status = document.getElementById("usage-status");
  function fact(name, text, bytes) {
    const cell = document.querySelector('[data-fact="' + name + '"]');
    if (!cell) { return; }
    cell.textContent = text;
    if (bytes !== undefined) { cell.dataset.bytes = bytes === null ? "" : String(bytes); }
  }
  function percent(value) { return value === null ? gettext("unknown") : format.percent(value); }
  const maxPoints = 60;
  const chart = new Chart(document.getElementById("usage-chart"), {
    type: "line",
    data: { labels: [], datasets: [
      { label: gettext("CPU %"), data: [], borderColor: "#1f5fbf", tension: 0.2, pointRadius: 0 },
      { label: gettext("Memory %"), data: [], borderColor: "#137a3b", tension: 0.2, pointRadius: 0 },
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
      const memory = sample.memory_percent;
      previous = sample;
      chart.data.labels.push(format.clock(sample.time));
      chart.data.datasets[0].data.push(cpu === null ? null : Math.round(cpu * 10) / 10);
      chart.data.datasets[1].data.push(memory);
      if (chart.data.labels.length > maxPoints) {
        chart.data.labels.shift();
        chart.data.datasets.forEach((d) => d.data.shift());
      }
      chart.update();
      status.textContent = interpolate(gettext("CPU %(cpu)s, memory %(memory)s"),
                                       { cpu: cpu === null ? "…" : percent(cpu), memory: percent(memory) }, true);
      fact("memory", format.iec(sample.memory_total), sample.memory_total);
      fact("memory_used", format.iec(sample.memory_used), sample.memory_used);
      fact("free_memory", format.iec(sample.memory_free), sample.memory_free);
      fact("memory_percent", percent(memory));
      status.dataset.samples = String(chart.data.labels.length);
    } catch (error) {
      const words = response && response.status === 429 ? gettext("paused: %(reason)s") : gettext("unreachable: %(reason)s");
      status.textContent = interpolate(words, { reason: error.message }, true);
    }
    return response;
  }
  window.webkvmPoll(poll, { every: 2000 }).start(true);
})();
