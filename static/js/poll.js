// Polling shared by the panel's scripts: webkvmPoll(once, {every, failed}) calls `once` (async; returns the
// fetch Response, or false to stop; throws when the panel could not be asked) `every` ms, or `failed` ms after
// a failure. A 429 (this user asked the route too often: webkvm/rate_limit.py) pauses for what Retry-After
// says, at least twice the last pause, at most 5 minutes. Returns {start(now), stop()}.
(function () {
  "use strict";
  const LONGEST_MS = 300000;
  window.webkvmPoll = function (once, options) {
    const every = options.every, failed = options.failed || options.every;
    let timer = null, round = 0, pause = 0;

    function retryAfter(response) {
      const seconds = Number(response.headers.get("Retry-After"));
      return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
    }
    async function tick(mine) {
      timer = null;
      let wait = every;
      try {
        const response = await once();
        if (response === false) { return; }
        if (response && response.status === 429) {
          pause = Math.min(LONGEST_MS, Math.max(retryAfter(response), pause * 2, every * 2));
          wait = pause;
        } else {
          pause = 0;
          if (response && !response.ok) { wait = failed; }
        }
      } catch (error) {
        wait = failed;
      }
      if (mine === round) { timer = window.setTimeout(tick, wait, mine); }
    }
    return {
      start: function (now) {
        if (timer !== null) { return; }
        round += 1;
        timer = window.setTimeout(tick, now ? 0 : every, round);
      },
      stop: function () {
        round += 1;  // a poll still running schedules nothing more
        if (timer !== null) { window.clearTimeout(timer); timer = null; }
      },
    };
  };
}());
