// The one formatter of the panel's scripts, twin of the server's (sizes: virt/xml/codecs.py iec; instants:
// webkvm/formats), so a figure a script updates reads as the page rendered it:
//   webkvmFormat.iec(2147483648) === "2.0 GiB", .kib(65536) === "64.0 MiB" (libvirt's memory unit),
//   .clock(epochSeconds) === "13:51:07" (a graph's time axis), in the panel's time zone (<html data-time-zone>,
// base.html), not the browser's, as the server writes instants ("2026-12-02 13:51:07 UTC"): a script that
// shows a whole instant takes it written by the server.
(function () {
  "use strict";
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];

  // One decimal below 100, whole numbers from 100; halves round up.
  function iec(bytes) {
    if (bytes === null || bytes === undefined || bytes === "") { return "unknown"; }
    let value = Number(bytes), unit = 0;
    while (value >= 1023.5 && unit < units.length - 1) { value /= 1024; unit += 1; }
    const tenths = Math.floor(value * 10 + 0.5);
    if (unit === 0 || tenths >= 1000) { return Math.floor(value + 0.5) + " " + units[unit]; }
    return (tenths / 10).toFixed(1) + " " + units[unit];
  }

  function kib(value) {
    return value === null || value === undefined || value === "" ? "unknown" : iec(Number(value) * 1024);
  }

  const zone = document.documentElement.dataset.timeZone || undefined;
  let parts = null;
  function fields(epoch) {
    if (parts === null) {
      const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
      try { parts = new Intl.DateTimeFormat("en-US", Object.assign({ timeZone: zone }, options)); } catch (error) {
        parts = new Intl.DateTimeFormat("en-US", options);  // a zone name this browser does not know
      }
    }
    const found = {};
    for (const part of parts.formatToParts(new Date(epoch * 1000))) { found[part.type] = part.value; }
    return found;
  }

  function clock(epoch) {
    const f = fields(epoch);
    return f.hour + ":" + f.minute + ":" + f.second;
  }

  window.webkvmFormat = { iec: iec, kib: kib, clock: clock };
}());
