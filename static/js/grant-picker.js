// The grant form's VM box offers the VMs of the host chosen beside it: the page has one <datalist> per host
// (id "vms-" + the host's key), and the browser filters a datalist as one types. Without this script the
// box offers the host chosen when the page was made.
(function () {
  "use strict";
  document.querySelectorAll("input[data-vm-list-prefix]").forEach(function (box) {
    const host = box.form && box.form.elements.namedItem("host");
    if (!host) { return; }
    function follow() {
      const list = document.getElementById(box.dataset.vmListPrefix + host.value);
      if (list) { box.setAttribute("list", list.id); } else { box.removeAttribute("list"); }
    }
    host.addEventListener("change", follow);
    follow();
  });
}());
