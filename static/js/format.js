// Formatting shared by the panel's scripts: window.webkvmFormat.iec(1536) === "1.5 KiB".
(function () {
  "use strict";
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
  function iec(bytes) {
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? value + " bytes" : value.toFixed(1) + " " + units[unit];
  }
  window.webkvmFormat = { iec: iec };
}());
