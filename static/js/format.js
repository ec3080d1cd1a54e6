// The one formatter of the panel's scripts, twin of the server's (sizes: virt/xml/codecs.py iec; instants:
// webkvm/formats), so a figure a script updates reads as the page rendered it:
//   webkvmFormat.iec(2147483648) === "2.0 GiB", .kib(65536) === "64.0 MiB" (libvirt's memory unit),
//   .clock(epochSeconds) === "13:51:07" (a graph's time axis), in the panel's time zone (<html data-time-zone>,
// base.html), not the browser's, as the server writes instants ("2026-12-02 13:51:07 UTC"): a script that
// shows a whole instant takes it written by the server.
// Numbers follow the page's language (<html lang>); sizes keep their units (MiB, GiB). Words come from the
// panel's JavaScript catalog (/jsi18n/, loaded by base.html): .state("shut off") is a VM state as shown,
// .jobState("done") a job's, .since(epoch, atLeast) how long a VM has been in its state (the server's
// instances/state_since.py Since.words), .duration(seconds) "3 min".
(function () {
  "use strict";
  // The catalog's functions; plain English where it is missing (a script run outside the panel's pages).
  const gettext = window.gettext || function (text) { return text; };
  const pgettext = window.pgettext || function (context, text) { return text; };
  const interpolate = window.interpolate || function (format, obj) {
    return format.replace(/%\(\w+\)s/g, function (match) { return String(obj[match.slice(2, -2)]); });
  };
  const lang = document.documentElement.lang || "en";
  const units = [gettext("bytes"), "KiB", "MiB", "GiB", "TiB", "PiB"];

  const numberFormats = {};
  // A number in the page's language with `digits` decimals (no grouping: sizes stay below 1024).
  function number(value, digits) {
    const key = String(digits || 0);
    if (!numberFormats[key]) {
      const options = { minimumFractionDigits: digits || 0, maximumFractionDigits: digits || 0, useGrouping: false };
      try { numberFormats[key] = new Intl.NumberFormat(lang, options); } catch (error) {
        numberFormats[key] = new Intl.NumberFormat("en", options);  // a language tag this browser does not know
      }
    }
    return numberFormats[key].format(value);
  }

  // One decimal below 100, whole numbers from 100; halves round up.
  function iec(bytes) {
    if (bytes === null || bytes === undefined || bytes === "") { return gettext("unknown"); }
    let value = Number(bytes), unit = 0;
    while (value >= 1023.5 && unit < units.length - 1) { value /= 1024; unit += 1; }
    const tenths = Math.floor(value * 10 + 0.5);
    if (unit === 0 || tenths >= 1000) { return number(Math.floor(value + 0.5), 0) + " " + units[unit]; }
    return number(tenths / 10, 1) + " " + units[unit];
  }

  function kib(value) {
    return value === null || value === undefined || value === "" ? gettext("unknown") : iec(Number(value) * 1024);
  }

  // "12.5 %": a percentage with one decimal; whole when digits is 0.
  function percent(value, digits) {
    return number(value, digits === undefined ? 1 : digits) + " %";
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

  // 24-hour "13:51:07" in every language the panel speaks.
  function clock(epoch) {
    const f = fields(epoch);
    return f.hour + ":" + f.minute + ":" + f.second;
  }

  // A VM's state as libvirt names it (virt/domains.py STATE_NAMES: the data, kept in data attributes) in words.
  const STATES = {
    "running": pgettext("VM state", "running"),
    "paused": pgettext("VM state", "paused"),
    "shutting down": pgettext("VM state", "shutting down"),
    "shut off": pgettext("VM state", "shut off"),
    "crashed": pgettext("VM state", "crashed"),
    "suspended (guest)": pgettext("VM state", "suspended (guest)"),
    "pmsuspended": pgettext("VM state", "suspended (guest)"),
    "blocked": pgettext("VM state", "blocked"),
    "no state": pgettext("VM state", "no state"),
  };
  function state(name) {
    return Object.prototype.hasOwnProperty.call(STATES, name) ? STATES[name] : name;
  }

  // A job's state (jobs/models.py) in words.
  const JOB_STATES = {
    "queued": pgettext("job state", "queued"),
    "running": pgettext("job state", "running"),
    "done": pgettext("job state", "done"),
    "failed": pgettext("job state", "failed"),
    "cancelled": pgettext("job state", "cancelled"),
    "interrupted": pgettext("job state", "interrupted"),
  };
  function jobState(name) {
    return Object.prototype.hasOwnProperty.call(JOB_STATES, name) ? JOB_STATES[name] : name;
  }

  // "3 d", "2 h", "5 min", "40 s": whole units, as the server's _duration.
  function duration(s) {
    if (s >= 86400) { return interpolate(gettext("%(count)s d"), { count: Math.floor(s / 86400) }, true); }
    if (s >= 3600) { return interpolate(gettext("%(count)s h"), { count: Math.floor(s / 3600) }, true); }
    if (s >= 60) { return interpolate(gettext("%(count)s min"), { count: Math.floor(s / 60) }, true); }
    return seconds(s);
  }

  function seconds(s) {
    return interpolate(gettext("%(count)s s"), { count: s }, true);
  }

  // How long a VM has been in its state: "3 min", "at least 2 h" (first seen in it then), "less than a minute".
  function since(epoch, atLeast) {
    if (epoch === null || epoch === undefined) { return gettext("unknown"); }
    const s = Math.max(0, Math.floor(Date.now() / 1000 - epoch));
    if (atLeast) {
      return s >= 60 ? interpolate(gettext("at least %(duration)s"), { duration: duration(s) }, true) : gettext("unknown");
    }
    return s < 60 ? gettext("less than a minute") : duration(s);
  }

  window.webkvmFormat = {
    iec: iec, kib: kib, clock: clock, number: number, percent: percent, state: state, jobState: jobState,
    duration: duration, seconds: seconds, since: since,
  };
}());
