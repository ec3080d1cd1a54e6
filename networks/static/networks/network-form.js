// Show only the parts of the new-network form that the chosen type uses.
(function () {
  "use strict";
  const form = document.getElementById("network-form");
  if (!form) return;
  const mode = form.querySelector("[name=mode]");
  function update() {
    form.querySelectorAll("fieldset[data-modes]").forEach(function (set) {
      const modes = set.dataset.modes.split(" ").filter(Boolean);
      set.hidden = modes.length > 0 && !modes.includes(mode.value);
    });
  }
  mode.addEventListener("change", update);
  update();
})();
