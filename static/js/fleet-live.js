// Live fleet table: rows change in place as the panel pushes them (static/js/live.js), with rows.json
// polling as the fallback. A VM that appears or disappears shows a "reload" notice rather than
// reshuffling the table; a host that stops answering gets its own row, which leaves when it answers.
// A row's state badge, Console link and power buttons follow its state: the row says what its viewer may do
// (data-power, data-console: instances/host_rows.py), each update which actions the state allows.
// Needs js/format.js.
(function () {
  "use strict";
  const table = document.getElementById("fleet");
  if (!table || !window.webkvmLive) { return; }
  const notice = document.getElementById("fleet-notice");
  const filters = new URLSearchParams(window.location.search);
  const url = new URL(table.dataset.rowsUrl, window.location.href);
  for (const [key, value] of filters) { if (!url.searchParams.has(key)) { url.searchParams.set(key, value); } }
  const columns = table.querySelectorAll("thead th").length;
  const labels = JSON.parse(table.dataset.rowActions || "{}");  // {name: {label, confirm}}
  const icons = document.getElementById("row-icons");  // each button's icon, drawn by the server

  // A row button's content: its icon and its words (narrow windows show the icon alone; the title says it).
  function fill(element, name, label) {
    const icon = icons && icons.content.querySelector('[data-icon="' + name + '"] svg');
    const words = document.createElement("span");
    words.className = "label";
    words.textContent = label;
    element.title = label;
    element.replaceChildren(...(icon ? [icon.cloneNode(true), words] : [words]));
  }

  function duration(s) {
    if (s >= 86400) { return Math.floor(s / 86400) + " d"; }
    if (s >= 3600) { return Math.floor(s / 3600) + " h"; }
    if (s >= 60) { return Math.floor(s / 60) + " min"; }
    return s + " s";
  }
  // As the server words it (instances/state_since.py Since.words).
  function since(epoch, atLeast) {
    if (epoch === null || epoch === undefined) { return "unknown"; }
    const s = Math.max(0, Math.floor(Date.now() / 1000 - epoch));
    if (atLeast) { return s >= 60 ? "at least " + duration(s) : "unknown"; }
    return s < 60 ? "less than a minute" : duration(s);
  }
  function set(row, col, text) {
    const cell = row.querySelector('[data-col="' + col + '"]');
    if (cell && cell.textContent !== text) { cell.textContent = text; }
    return cell;
  }
  function badge(row, vm) {
    const cell = row.querySelector('[data-col="state"]');
    if (!cell) { return; }
    let span = cell.querySelector(".badge");
    if (!span) { span = document.createElement("span"); cell.replaceChildren(span); }
    const wanted = "badge " + (vm.state_class || "state-no-state");
    if (span.className !== wanted) { span.className = wanted; }
    if (span.textContent !== vm.state) { span.textContent = vm.state; }
  }
  // The Console link (console grant, a VM that runs) and the power buttons (power grant, per state).
  function buttons(row, vm) {
    const cell = row.querySelector('[data-col="actions"]');
    if (!cell) { return; }
    const consoleUrl = row.dataset.console && vm.active ? row.dataset.console : "";
    const acts = row.dataset.power !== undefined ? (vm.actions || []) : [];
    const signature = (consoleUrl ? "console " : "") + acts.join(" ");
    if (cell.dataset.acts === signature) { return; }
    cell.dataset.acts = signature;
    const made = [];
    if (consoleUrl) {
      const link = document.createElement("a");
      link.className = "button";
      link.dataset.act = "console";
      link.href = consoleUrl;
      fill(link, "console", "Console");
      made.push(link);
    }
    for (const name of acts) {
      const known = labels[name] || { label: name, confirm: "" };
      const button = document.createElement("button");
      button.type = "submit";
      button.setAttribute("form", "row-action");
      button.setAttribute("formaction", row.dataset.url + "action/" + name + "/");
      button.dataset.act = name;
      fill(button, name, known.label);
      if (known.confirm) {
        button.className = "danger";
        button.dataset.confirm = known.confirm;
        button.dataset.confirmTitle = known.label + " " + vm.name + "?";
      }
      made.push(button);
    }
    cell.replaceChildren(...made);
  }
  function update(row, vm) {
    badge(row, vm);
    buttons(row, vm);
    set(row, "since", since(vm.state_since, vm.state_since_at_least));
    set(row, "vcpus", String(vm.vcpus));
    set(row, "memory", window.webkvmFormat.kib(vm.memory_kib));
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
    const said = row.cells[0].querySelector('[data-col="words"]') || row.cells[0];
    said.textContent = host + ": " + words;
  }
  const rows = new Map();
  for (const row of table.querySelectorAll("tbody tr[data-key]")) {
    rows.set(row.dataset.key, row);
    const cell = row.querySelector('[data-col="actions"]');
    if (cell) {  // what the server drew, so an update that changes nothing redraws nothing
      cell.dataset.acts = [...cell.querySelectorAll("[data-act]")].map((el) => el.dataset.act).join(" ");
    }
  }

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
