// The create form's steps: search the OS list, pre-fill the sizes of the chosen OS or flavor, re-read the
// choices when the host or "every machine type" changes, and keep the summary current. The form works
// without this script: the server applies the OS's sizes and the "Update choices" button re-reads.
(function () {
  "use strict";
  const form = document.getElementById("create-vm");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const osList = $("id_os");
  const refresh = $("create-refresh");

  form.querySelectorAll(".js-only").forEach((el) => { el.hidden = false; });
  form.querySelectorAll(".no-js-hint").forEach((el) => { el.hidden = true; });

  function sizeChoice() {
    return form.querySelector("input[name=size]:checked");
  }

  function fill(source) {
    if (!source || !source.dataset.vcpus) return;
    $("id_vcpus").value = source.dataset.vcpus;
    $("id_memory").value = source.dataset.memory;
    $("id_disk_size").value = source.dataset.disk;
  }

  function applySize() {
    const choice = sizeChoice();
    if (!choice) return;
    if (choice.value === "recommended") fill(osList.selectedOptions[0]);
    else if (choice.value.startsWith("flavor:")) fill(choice);
  }

  function applyOs() {
    const option = osList.selectedOptions[0];
    if (!option) return;
    const firmware = $("id_firmware");
    if (option.dataset.efi && firmware && [...firmware.options].some((o) => o.value === "efi")) firmware.value = "efi";
    applySize();
  }

  function label(name) {
    const field = form.elements[name];
    if (!field) return "";
    if (field instanceof RadioNodeList) {
      const checked = [...field].find((r) => r.checked);
      return checked ? checked.parentElement.textContent.trim() : "";
    }
    if (field.tagName === "SELECT") return field.selectedOptions[0] ? field.selectedOptions[0].textContent : "";
    if (field.type === "checkbox") return field.checked ? gettext("yes") : gettext("no");
    return field.value;
  }

  // The summary's entries in the server's order (instances/forms_create.py summary): a <dd>'s data-for names
  // its entry, in English or (a translated label) by its place.
  const SUMMARY = ["Name", "OS", "Host", "Size", "ISO", "Boot disk", "Network", "Machine", "Virtualization", "Start"];

  function summarise() {
    const values = {vcpus: $("id_vcpus").value, memory: $("id_memory").value, disk: $("id_disk_size").value};
    const newDisk = form.querySelector("input[name=disk_source][value=new]");
    const shown = {
      "Name": label("name") || "-", "OS": label("os"), "Host": label("host"), "ISO": label("iso"),
      "Boot disk": label("disk_source"), "Network": label("nic1_source"), "Machine": label("machine"),
      "Virtualization": label("virt_type"), "Start": label("start"),
      "Size": newDisk && newDisk.checked
        ? interpolate(gettext("%(vcpus)s vCPU, %(memory)s memory, %(disk)s disk"), values, true)
        : interpolate(gettext("%(vcpus)s vCPU, %(memory)s memory"), values, true),
    };
    document.querySelectorAll("#create-summary dd").forEach((dd, index) => {
      const key = dd.dataset.for in shown ? dd.dataset.for : SUMMARY[index];
      if (shown[key]) dd.textContent = shown[key];  // a hidden field keeps the server's words
    });
  }

  const search = $("os-search");
  if (search && osList) {
    search.addEventListener("input", () => {
      const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      osList.querySelectorAll("option").forEach((o) => {
        const text = `${o.textContent} ${o.parentElement.label || ""}`.toLowerCase();
        o.hidden = !words.every((w) => text.includes(w));
      });
      osList.querySelectorAll("optgroup").forEach((g) => {
        g.hidden = ![...g.children].some((o) => !o.hidden);
      });
    });
  }

  if (osList) osList.addEventListener("change", applyOs);
  form.querySelectorAll("input[name=size]").forEach((r) => r.addEventListener("change", applySize));
  ["id_vcpus", "id_memory", "id_disk_size"].forEach((id) => {
    const field = $(id);
    if (field) field.addEventListener("input", () => {
      const custom = form.querySelector("input[name=size][value=custom]");
      if (custom) custom.checked = true;
    });
  });
  ["id_host", "id_all_machines"].forEach((id) => {
    const field = $(id);
    if (field && refresh) field.addEventListener("change", () => refresh.click());
  });
  form.addEventListener("input", summarise);
  form.addEventListener("change", summarise);
  applySize();
  summarise();
})();
