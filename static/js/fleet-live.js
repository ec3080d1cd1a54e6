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
  const format = window.webkvmFormat;

  // A row button's content: its icon and its words (narrow windows show the icon alone; the title says it).
  function fill(element, name, label) {
    const icon = icons && icons.content.querySelector('[data-icon="' + name + '"] svg');
    const words = document.createElement("span");
    words.className = "label";
    words.textContent = label;
    element.title = label;
    element.replaceChildren(...(icon ? [icon.cloneNode(true), words] : [words]));
  }

  // The server writes a percentage as Python does ("12.5 %", "3 %"): as many decimals as it has.
  function decimals(value) {
    const text = String(value);
    return text.includes(".") ? text.length - text.indexOf(".") - 1 : 0;
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
    const words = format.state(vm.state);  // the data (vm.state) stays libvirt's English; the words translate
    if (span.textContent !== words) { span.textContent = words; }
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
      fill(link, "console", gettext("Console"));
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
        button.dataset.confirmTitle = interpolate(gettext("%(action)s %(name)s?"), { action: known.label, name: vm.name }, true);
      }
      made.push(button);
    }
    cell.replaceChildren(...made);
  }
  function update(row, vm) {
    badge(row, vm);
    buttons(row, vm);
    set(row, "since", format.since(vm.state_since, vm.state_since_at_least));
    set(row, "vcpus", String(vm.vcpus));
    set(row, "memory", format.kib(vm.memory_kib));
    set(row, "cpu", vm.cpu_percent === null ? "" : format.percent(vm.cpu_percent, decimals(vm.cpu_percent)));
    set(row, "autostart", vm.autostart ? gettext("yes") : gettext("no"));
  }
  function hostWords(host, words, busy) {
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
    // The words come in the viewer's language: whether the host is busy or down is data (frame.busy).
    row.cells[0].className = "state " + (busy ? "busy" : "down");
    const said = row.cells[0].querySelector('[data-col="words"]') || row.cells[0];
    said.textContent = interpolate(gettext("%(host)s: %(words)s"), { host: host, words: troubleWords(words) }, true);
  }
  // A host's trouble as the panel words it (virt/errors.py host_words, brief_words) in the page's language;
  // the host's own words after "unreachable:" or "error:" (ssh's, libvirt's) stay as they were said.
  const TROUBLES = [
    [/^host busy$/, () => gettext("host busy")],
    [/^host unavailable$/, () => gettext("host unavailable")],
    [/^busy: (\d+) calls? queued$/, (m) => interpolate(
      ngettext("busy: %(count)s call queued", "busy: %(count)s calls queued", Number(m[1])), { count: m[1] }, true)],
    [/^busy: (\d+) calls? queued, this one taken up late$/, (m) => interpolate(
      ngettext("busy: %(count)s call queued, this one taken up late",
               "busy: %(count)s calls queued, this one taken up late", Number(m[1])), { count: m[1] }, true)],
    [/^busy: the host answers, but not this call within (\S+) s$/,
      (m) => interpolate(gettext("busy: the host answers, but not this call within %(seconds)s s"), { seconds: m[1] }, true)],
    [/^unreachable: ([\s\S]*)$/, (m) => interpolate(gettext("unreachable: %(reason)s"), { reason: m[1] }, true)],
    [/^error: ([\s\S]*)$/, (m) => interpolate(gettext("error: %(reason)s"), { reason: m[1] }, true)],
  ];
  function troubleWords(words) {
    for (const [pattern, say] of TROUBLES) {
      const found = pattern.exec(words);
      if (found) { return say(found); }
    }
    return words;
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
    const busy = new Set(data.busy || []);
    for (const [host, words] of Object.entries(data.unreachable || {})) { hostWords(host, words, busy.has(host)); }
    table.dataset.updated = String(Date.now());
  }
  window.webkvmLive(table.dataset.liveScope, apply, url.toString());
})();
