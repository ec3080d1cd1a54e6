// Clone progress: polls the job's status.json until it is done or failed.
(function () {
  "use strict";
  const box = document.getElementById("clone-job");
  if (!box) { return; }
  const bar = document.getElementById("clone-bar");
  const percent = document.getElementById("clone-percent");
  const state = document.getElementById("clone-state");
  const message = document.getElementById("clone-message");
  const link = document.getElementById("clone-link");
  const words = { copying: "Copying disks…", defining: "Defining the clone…", finishing: "Finishing…", done: "Done.", failed: "Failed." };
  function size(bytes) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
  }
  function show(s) {
    box.dataset.state = s.state;
    bar.value = s.percent;
    percent.textContent = s.percent + " %";
    state.textContent = words[s.state] || s.state;
    message.textContent = s.message;
    if (s.state === "failed") { message.className = "msg error"; message.setAttribute("role", "alert"); }
    s.disks.forEach(function (d) {
      const item = box.querySelector('li[data-volume="' + CSS.escape(d.volume) + '"] span');
      if (item) { item.textContent = size(d.copied_bytes) + " of " + size(d.total_bytes); }
    });
    if (s.url) {
      const a = link.querySelector("a");
      a.href = s.url;
      link.hidden = false;
    }
  }
  async function poll() {
    try {
      const response = await fetch(box.dataset.url, { credentials: "same-origin" });
      if (!response.ok) { throw new Error(response.statusText); }
      const s = await response.json();
      show(s);
      if (s.state === "done" || s.state === "failed") { return; }
    } catch (error) {
      state.textContent = "Progress unavailable: " + error.message;
    }
    window.setTimeout(poll, 500);
  }
  if (box.dataset.state !== "done" && box.dataset.state !== "failed") { poll(); }
})();
