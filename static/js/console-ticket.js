// What the VNC and serial console pages share: a fresh one-time ticket (30 s, single use), asked for
// by POST before every connection, the WebSocket address it opens on the panel's own origin, and the
// back-off between attempts after a failure.
const TICKET_TIMEOUT_MS = 10000;
// Words from the panel's JavaScript catalog (/jsi18n/, a classic script before this module).
const {gettext, interpolate} = window;

export async function askTicket(root) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TICKET_TIMEOUT_MS);
    let response;
    try {
        response = await fetch(root.dataset.ticketUrl, {
            method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": root.dataset.csrf},
            signal: abort.signal,
        });
    } catch (error) {
        throw new Error(abort.signal.aborted
            ? interpolate(gettext("the panel did not answer within %(seconds)s s"), {seconds: TICKET_TIMEOUT_MS / 1000}, true)
            : gettext("the panel cannot be reached"));
    } finally {
        clearTimeout(timer);
    }
    if (response.status === 403) {
        throw new Error(gettext("you may not open this console (any more)"));
    }
    if (!response.ok) {
        throw new Error(interpolate(gettext("the panel answered %(status)s"), {status: response.status}, true));
    }
    // A session that ended is sent to the log-in page, which is HTML.
    if (!(response.headers.get("Content-Type") || "").includes("application/json")) {
        throw new Error(gettext("your session has ended: reload the page to log in again"));
    }
    return response.json();
}

// The ticket travels as a WebSocket subprotocol (answer.protocols), never in the URL: URLs end up in
// access logs. `query` carries switches only (e.g. "?takeover=1").
export function openSocket(answer, query = "") {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return new WebSocket(`${scheme}//${window.location.host}${answer.ws_path}${query}`, answer.protocols);
}

// After a failure the page tries again by itself, waiting 1, 2, 4, 8, 16, then 30 s between attempts
// and saying when the next one comes; a connection that works starts the series again. `attempt` opens
// a connection, `tell(seconds, at)` shows the wait (at: Unix seconds of the next attempt).
const LONGEST_WAIT_S = 30;

export class Backoff {
    constructor(attempt, tell) {
        this.attempt = attempt;
        this.tell = tell;
        this.wait = 0;
        this.timer = null;
        this.ticker = null;
    }

    cancel() {
        clearTimeout(this.timer);
        clearInterval(this.ticker);
        this.timer = this.ticker = null;
    }

    succeeded() {
        this.cancel();
        this.wait = 0;
    }

    failed() {
        this.cancel();
        this.wait = this.wait ? Math.min(this.wait * 2, LONGEST_WAIT_S) : 1;
        const at = Date.now() + this.wait * 1000;
        const show = () => this.tell(Math.max(0, Math.ceil((at - Date.now()) / 1000)), at / 1000);
        show();
        this.ticker = setInterval(show, 1000);
        this.timer = setTimeout(() => this.now(), this.wait * 1000);
    }

    now() {
        this.cancel();
        this.attempt();
    }
}

// "not connected: REASON; next attempt at 13:51:07 (in 4 s)", in the panel's time zone (js/format.js).
export function waitWords(reason, seconds, at) {
    const format = window.webkvmFormat;
    const clock = format ? format.clock(at) : new Date(at * 1000).toLocaleTimeString();
    return interpolate(gettext("%(reason)s; next attempt at %(clock)s (in %(seconds)s s)"),
                       {reason, clock, seconds}, true);
}
