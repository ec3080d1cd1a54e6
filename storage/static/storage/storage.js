// Storage pages: stream a file into a volume with a progress bar (bytes and rate).
// Needs js/format.js. Clones and wipes are jobs: their page is js/job-progress.js.
(function () {
  "use strict";
  const iec = window.webkvmFormat.iec;

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
      if (!chosen) { form.querySelector('[data-for="file"]').textContent = "Choose a file."; return; }
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
        problem.textContent = "The panel did not answer: " + error;
        busy(false);
        return;
      }
      if (!answer.ok) { showErrors(answer); busy(false); return; }

      box.hidden = false;
      bar.value = 0;
      status.textContent = "0 of " + iec(chosen.size);
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
        status.textContent = iec(e.loaded) + " of " + iec(e.total) + " (" + bar.value + "%), " +
          iec(e.loaded / seconds) + "/s";
      });
      xhr.addEventListener("load", () => {
        let result = {};
        try { result = JSON.parse(xhr.responseText); } catch (error) { result = { error: xhr.statusText }; }
        if (xhr.status === 201) {
          bar.value = 100;
          status.textContent = "done: " + iec(result.bytes) + " in " + result.seconds + " s (100%), " +
            iec(result.rate) + "/s";
          status.dataset.state = "done";
          refreshVolumes().catch(() => {
            const link = document.createElement("a");
            link.href = window.location.pathname;
            link.textContent = " Show it in the list";
            status.appendChild(link);
          });
        } else {
          status.dataset.state = "failed";
          showErrors(result);
          if (!result.errors && !result.error) { problem.textContent = "Upload failed: HTTP " + xhr.status; }
        }
        busy(false);
        xhr = null;
      });
      xhr.addEventListener("error", () => {
        status.dataset.state = "failed";
        problem.textContent = "The upload was interrupted; nothing was kept.";
        busy(false);
        xhr = null;
      });
      xhr.addEventListener("abort", () => {
        status.dataset.state = "cancelled";
        problem.textContent = "Upload cancelled; nothing was kept.";
        busy(false);
        xhr = null;
      });
      xhr.send(chosen);
    });
  }
}());
