// A VM's page follows the VM's state as the panel pushes it (static/js/live.js): the state badge
// changes at once; the actions offered depend on the state, so a change offers a reload.
(function () {
  "use strict";
  const label = document.getElementById("vm-state");
  if (!label || !label.dataset.liveScope || !window.webkvmLive) { return; }
  const key = label.dataset.key;
  const rendered = label.dataset.renderedState;
  const stateClass = { "running": "up", "paused": "paused", "shut off": "off", "crashed": "down" };
  const notice = document.getElementById("vm-state-notice");
  window.webkvmLive(label.dataset.liveScope, function (data) {
    const vm = (data.vms || {})[key];
    if (vm) {
      label.textContent = vm.state;
      label.className = "vmstate " + (stateClass[vm.state] || "other");
      label.dataset.state = vm.state;
      if (notice) { notice.hidden = vm.state === rendered; }
    }
    if ((data.removed || []).includes(key) && notice) {
      notice.hidden = false;
      notice.firstChild.textContent = "This VM is no longer defined on its host. ";
    }
  }, null);
})();
