// A VM's page follows the VM's state as the panel pushes it (static/js/live.js): the state badge and facts
// change at once; the actions offered depend on the state, so a change offers a reload. After a shutdown
// request the page counts down to offering Force off, and says so when the guest has stopped.
(function () {
  "use strict";
  const label = document.getElementById("vm-state");
  if (!label) { return; }
  const key = label.dataset.key;
  const rendered = label.dataset.renderedState;
  let last = rendered;
  const notice = document.getElementById("vm-state-notice");
  const pending = document.getElementById("shutdown-pending");
  const stateFact = document.querySelector("#facts [data-fact=state]");
  const sinceFact = document.querySelector("#facts [data-fact=since]");
  const format = window.webkvmFormat;

  function badge(state) {  // as the server's state_badge filter: "shut off" -> "state-shut-off"
    return "state-" + ((state.toLowerCase().match(/[a-z]+/g) || ["no", "state"]).join("-"));
  }

  if (pending) {
    const offer = document.getElementById("shutdown-force-off");
    const wait = document.getElementById("shutdown-wait");
    const seconds = Number(pending.dataset.forceOffIn || "0");
    if (offer && offer.hidden) {
      window.setTimeout(function () {
        if (pending.dataset.stopped) { return; }
        offer.hidden = false;
        if (wait) { wait.hidden = true; }
      }, seconds * 1000);
    }
  }

  function stopped(state) {
    if (!pending || pending.dataset.stopped) { return; }
    pending.dataset.stopped = "1";
    pending.replaceChildren(document.createTextNode(
      interpolate(gettext("The guest has shut down: it is %(state)s."), { state: format.state(state) }, true)));
    pending.classList.add("success");
  }

  if (!label.dataset.liveScope || !window.webkvmLive) { return; }
  window.webkvmLive(label.dataset.liveScope, function (data) {
    const vm = (data.vms || {})[key];
    if (vm) {
      const words = format.state(vm.state);  // vm.state (the data, data-state) stays libvirt's English
      label.textContent = words;
      label.className = "badge " + (vm.state_class || badge(vm.state));
      label.dataset.state = vm.state;
      if (stateFact) {
        stateFact.textContent = vm.managed_save
          ? interpolate(gettext("%(state)s (saved state kept)"), { state: words }, true) : words;
      }
      if (vm.state !== last) {
        last = vm.state;
        if (sinceFact) {
          sinceFact.textContent = gettext("less than a minute");
          const capital = words.charAt(0).toUpperCase() + words.slice(1);
          sinceFact.previousElementSibling.textContent = interpolate(gettext("%(state)s for"), { state: capital }, true);
        }
        if (["shut off", "crashed"].includes(vm.state)) { stopped(vm.state); }
      }
      if (notice) { notice.hidden = vm.state === rendered; }
    }
    if ((data.removed || []).includes(key) && notice) {
      notice.hidden = false;
      notice.firstChild.textContent = gettext("This VM is no longer defined on its host.") + " ";
    }
  }, null);
})();
