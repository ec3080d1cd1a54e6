// Storage pages: stream a file into a volume with a progress bar (bytes and rate).
// Needs js/format.js. Clones and wipes are jobs: their page is js/job-progress.js.
(function () {
  "use strict";
  const format = window.webkvmFormat;
  const iec = format.iec;

  const form = document.getElementById("upload");
  if (form) {
    const file = document.getElementById("upload-file");
    const name = document.getElementById("upload-name");
    const start = document.getElementById("upload-start");
    const cancel = document.getElementById("upload-cancel");
    const box = document.getElementById("upload-progress");
    const bar = document.getElementById("upload-bar");
    const status = document.getElementById("upload-status");
    const problem = document.getElementById("upload-error");
    const token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    let xhr = null;
    let suggested = "";

    function clearErrors() {
      form.querySelectorAll("[data-for]").forEach((p) => { p.textContent = ""; });
      problem.textContent = "";
    }
    function showErrors(answer) {
      if (answer.errors) {
        Object.entries(answer.errors).forEach(([field, messages]) => {
          const target = form.querySelector('[data-for="' + field + '"]') || problem;
          target.textContent = messages.join(" ");
        });
      }
      if (answer.error || answer.message) { problem.textContent = answer.error || answer.message; }
    }
    // The pool's page as it is now: its volume rows and usage replace the ones shown, so a finished
    // upload is in the list without a reload (the page itself is the one source of those rows).
    async function refreshVolumes() {
      const response = await fetch(window.location.pathname, { credentials: "same-origin" });
      if (!response.ok) { return; }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      [["#volumes tbody", "#volumes tbody"], ["#facts", "#facts"]].forEach(([mine, theirs]) => {
        const old = document.querySelector(mine);
        const now = fresh.querySelector(theirs);
        if (old && now) { old.replaceWith(document.adoptNode(now)); }
      });
    }
    function busy(on) {
      start.disabled = on; file.disabled = on; name.disabled = on; cancel.hidden = !on;
    }

    file.addEventListener("change", () => {
      const chosen = file.files[0];
      if (chosen && (!name.value || name.value === suggested)) {
        suggested = chosen.name.replace(/[^A-Za-z0-9._+-]/g, "_").replace(/\.\.+/g, ".").replace(/^[^A-Za-z0-9]+/, "");
        name.value = suggested;
      }
    });

    cancel.addEventListener("click", () => { if (xhr) { xhr.abort(); } });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors();
      const chosen = file.files[0];
      if (!chosen) { form.querySelector('[data-for="file"]').textContent = gettext("Choose a file."); return; }
      const announce = new FormData();
      announce.append("csrfmiddlewaretoken", token);
      announce.append("name", name.value);
      announce.append("size", String(chosen.size));
      busy(true);
      let answer;
      try {
        const response = await fetch(form.action, { method: "POST", body: announce, credentials: "same-origin" });
        answer = await response.json();
      } catch (error) {
        problem.textContent = interpolate(gettext("The panel did not answer: %(reason)s"), { reason: String(error) }, true);
        busy(false);
        return;
      }
      if (!answer.ok) { showErrors(answer); busy(false); return; }

      box.hidden = false;
      bar.value = 0;
      status.textContent = interpolate(gettext("%(done)s of %(total)s"), { done: format.number(0, 0), total: iec(chosen.size) }, true);
      const began = performance.now();
      xhr = new XMLHttpRequest();
      xhr.open("PUT", answer.url + "?name=" + encodeURIComponent(name.value));
      xhr.setRequestHeader("X-CSRFToken", token);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) { return; }
        const seconds = Math.max((performance.now() - began) / 1000, 0.001);
        bar.value = Math.floor(100 * e.loaded / e.total);
        status.textContent = interpolate(gettext("%(done)s of %(total)s (%(percent)s), %(rate)s/s"), {
          done: iec(e.loaded), total: iec(e.total), percent: format.number(bar.value, 0) + "%", rate: iec(e.loaded / seconds),
        }, true);
      });
      xhr.addEventListener("load", () => {
        let result = {};
        try { result = JSON.parse(xhr.responseText); } catch (error) { result = { error: xhr.statusText }; }
        if (xhr.status === 201) {
          bar.value = 100;
          status.textContent = interpolate(gettext("done: %(size)s in %(seconds)s (%(percent)s), %(rate)s/s"), {
            size: iec(result.bytes), seconds: format.seconds(result.seconds), percent: format.number(100, 0) + "%",
            rate: iec(result.rate),
          }, true);
          status.dataset.state = "done";
          refreshVolumes().catch(() => {
            const link = document.createElement("a");
            link.href = window.location.pathname;
            link.textContent = gettext("Show it in the list");
            status.append(" ", link);
          });
        } else {
          status.dataset.state = "failed";
          showErrors(result);
          if (!result.errors && !result.error) {
            problem.textContent = interpolate(gettext("Upload failed: HTTP %(status)s"), { status: xhr.status }, true);
          }
        }
        busy(false);
        xhr = null;
      });
      xhr.addEventListener("error", () => {
        status.dataset.state = "failed";
        problem.textContent = gettext("The upload was interrupted; nothing was kept.");
        busy(false);
        xhr = null;
      });
      xhr.addEventListener("abort", () => {
        status.dataset.state = "cancelled";
        problem.textContent = gettext("Upload cancelled; nothing was kept.");
        busy(false);
        xhr = null;
      });
      xhr.send(chosen);
    });
  }
}());
