// Migration progress without reloads: polls the job's status.json twice a second and fills in the
// progress bar, the figures from libvirt's job statistics, the pre-flight findings and the final
// report. Cancel / Stop post in the background. Works for one VM (data-kind="job") and for a
// batch (data-kind="batch": one row per VM).
(function () {
  "use strict";
  const box = document.getElementById("migration");
  if (!box) { return; }
  const kind = box.dataset.kind;
  const cancelForm = document.getElementById("migration-cancel");
  const cancelButton = document.getElementById("cancel-button");
  const report = document.getElementById("migration-report");
  let timer = null;

  function bytes(value) {
    if (value === null || value === undefined) { return "–"; }
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = value, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }
  function text(el, value) { if (el && el.textContent !== value) { el.textContent = value; } }
  function field(name) { return box.querySelector('[data-field="' + name + '"]'); }
  function figure(name) { return box.querySelector('[data-figure="' + name + '"]'); }

  function showFindings(list, findings) {
    if (!list) { return; }
    list.replaceChildren();
    for (const f of findings) {
      const li = document.createElement("li");
      li.className = "finding" + (f.blocking ? " problem" : "");
      li.dataset.code = f.code;
      const label = document.createElement("strong");
      label.textContent = f.blocking ? "Problem: " : "Note: ";
      if (f.blocking) { label.className = "state down"; }
      li.append(label, f.problem + (f.advice ? " " + f.advice : ""));
      list.append(li);
    }
  }

  function updateJob(job) {
    const p = job.progress;
    text(field("vm_name"), job.vm_name);
    text(field("state"), job.state);
    text(field("options"), job.options);
    const bar = document.getElementById("migration-bar");
    if (bar) { bar.value = p.percent; bar.textContent = p.percent + " %"; }
    text(document.getElementById("migration-percent"), p.percent + " %");
    text(figure("processed"), bytes(p.processed));
    text(figure("remaining"), bytes(p.remaining));
    text(figure("rate"), p.rate_bps === null ? "–" : bytes(p.rate_bps) + "/s");
    text(figure("elapsed"), job.wall_s === null ? "–" : job.wall_s.toFixed(1) + " s");
    if (p.downtime_ms !== null) { text(figure("downtime"), p.downtime_ms + " ms"); }
    if (job.findings.length) { showFindings(document.getElementById("findings"), job.findings); }
    if (job.report) {
      text(field("outcome"), job.report.outcome);
      text(document.getElementById("report-message"), job.report.message);
      const notes = document.getElementById("report-notes");
      if (notes && notes.children.length !== job.report.notes.length) {
        notes.replaceChildren(...job.report.notes.map((n) => { const li = document.createElement("li"); li.textContent = n; return li; }));
      }
      const vmLink = document.getElementById("report-vm");
      if (vmLink) { vmLink.href = job.vm_url; }
      const consoleLink = document.getElementById("report-console");
      if (consoleLink) { consoleLink.href = job.console_url; }
    }
  }

  function updateBatch(data) {
    for (const job of data.jobs) {
      const row = box.querySelector('tr[data-job="' + job.id + '"]');
      if (!row) { continue; }
      const cell = (name) => row.querySelector('[data-col="' + name + '"]');
      text(cell("vm_name"), job.vm_name);
      text(cell("mode"), job.live === null ? "–" : (job.live ? "live" : "offline"));
      text(cell("state"), job.state);
      text(cell("percent"), job.progress.percent + " %");
      const bar = row.querySelector("progress");
      if (bar) { bar.value = job.progress.percent; }
      text(cell("downtime"), job.progress.downtime_ms === null ? "" : job.progress.downtime_ms + " ms");
      let result = job.report ? job.report.message : "";
      const problems = job.findings.filter((f) => f.blocking).map((f) => f.problem);
      if (problems.length) { result += " " + problems.join(" "); }
      text(cell("result"), result);
    }
    text(document.getElementById("migration-state"), data.finished ? "finished" : (data.stopped ? "stopping" : "running"));
    if (data.finished) {
      const counts = Object.entries(data.counts).map(([state, n]) => n + " " + state).join(", ");
      text(document.getElementById("report-message"), counts + (data.stopped ? " (stopped)" : "") +
        (data.wall_s === null ? "" : " in " + data.wall_s.toFixed(1) + " s") + ".");
    }
  }

  async function poll() {
    let data;
    try {
      const response = await fetch(box.dataset.statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (!response.ok) { return; }
      data = await response.json();
    } catch (error) { return; }
    if (kind === "batch") { updateBatch(data); } else { updateJob(data); }
    box.dataset.updated = String(Date.now());
    if (data.finished) {
      window.clearInterval(timer);
      if (cancelForm) { cancelForm.hidden = true; }
      if (report) { report.hidden = false; }
      box.dataset.finished = "true";
    }
  }

  if (cancelForm) {
    cancelForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (cancelButton) { cancelButton.disabled = true; cancelButton.textContent = "Stopping…"; }
      const token = cancelForm.querySelector("input[name=csrfmiddlewaretoken]").value;
      try {
        await fetch(cancelForm.action, { method: "POST", credentials: "same-origin",
          headers: { "X-CSRFToken": token, "Accept": "application/json" } });
      } catch (error) { /* the next poll shows the outcome */ }
      poll();
    });
  }
  timer = window.setInterval(poll, 500);
  poll();
})();
