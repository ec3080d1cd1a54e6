// What the VNC and serial console pages share: a fresh one-time ticket (30 s, single use), asked for
// by POST before every connection, and the WebSocket address it opens on the panel's own origin.
export async function askTicket(root) {
    const response = await fetch(root.dataset.ticketUrl, {
        method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": root.dataset.csrf},
    });
    if (response.status === 403) {
        throw new Error("you may not open this console (any more)");
    }
    if (!response.ok) {
        throw new Error(`the panel answered ${response.status}`);
    }
    return response.json();
}

// The ticket travels as a WebSocket subprotocol (answer.protocols), never in the URL: URLs end up in
// access logs. `query` carries switches only (e.g. "?takeover=1").
export function openSocket(answer, query = "") {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return new WebSocket(`${scheme}//${window.location.host}${answer.ws_path}${query}`, answer.protocols);
}
