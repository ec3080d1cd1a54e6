// The serial console page: xterm.js on a WebSocket opened with a fresh one-time ticket.
// The ticket (30 s, single use) is asked for by POST before every connection; the server opens
// the VM's console through the host's libvirt connection, so nothing here names a host or port.
// Close codes from the server: 4403 refused, 4409 in use by somebody else, 4001 taken over, 4000 ended.
// A failed or lost connection is tried again after a back-off (console-ticket.js); one held or taken
// over by somebody else waits for Reconnect or Take over, which are the viewer's choice.
// A module (deferred): xterm.js and its fit addon, classic scripts before it, have run by then.
import {Backoff, askTicket, openSocket, waitWords} from "./console-ticket.js";

// Words from the panel's JavaScript catalog (/jsi18n/, a classic script before this module).
const {gettext, interpolate} = window;

(() => {
    const root = document.getElementById("serial");
    if (!root) {
        return;
    }
    const screen = document.getElementById("serial-screen");
    const statusLine = document.getElementById("serial-status");
    const reconnectButton = document.getElementById("serial-reconnect");
    const takeOverButton = document.getElementById("serial-takeover");
    const encoder = new TextEncoder();
    const STEADY_MS = 5000;
    let problem = "";
    let opened = 0;  // when the current socket opened
    const retry = new Backoff(() => connect(false),
                              (seconds, at) => setStatus(waitWords(problem, seconds, at), "failed"));

    const term = new window.Terminal({
        cursorBlink: true,
        scrollback: 5000,
        fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace",
        fontSize: 14,
    });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(screen);
    // Fit to window: as many rows and columns as the box holds, again whenever it changes size.
    // A serial line has no window size to tell the guest; `stty rows R cols C` there if needed.
    const refit = () => {
        try {
            fit.fit();
        } catch (error) {
            // hidden or zero-sized box: keep the previous size
        }
    };
    refit();
    new ResizeObserver(refit).observe(screen);
    root.dataset.started = "yes";  // js/console-watch.js: the scripts loaded

    let socket = null;

    function setStatus(text, state) {
        statusLine.textContent = text;
        statusLine.dataset.state = state;
        root.dataset.state = state;
        reconnectButton.hidden = state === "connected" || state === "connecting";
        takeOverButton.hidden = state !== "in-use";
    }

    function failed(words) {
        problem = words;
        retry.failed();
    }

    function closed(event) {
        const reason = event.reason || "";
        const said = (words) => interpolate(words, {reason}, true);
        if (event.code === 4409) {
            setStatus(said(gettext("not connected: %(reason)s")), "in-use");
        } else if (event.code === 4001) {
            setStatus(said(gettext("disconnected: %(reason)s")), "taken-over");
        } else if (event.code === 4403) {
            failed(said(gettext("refused: %(reason)s")));
        } else if (reason) {
            failed(said(gettext("disconnected: %(reason)s")));
        } else {
            failed(event.wasClean ? gettext("disconnected") : gettext("connection lost"));
        }
    }

    async function connect(takeOver) {
        retry.cancel();
        if (socket) {
            const old = socket;
            socket = null;
            old.close();
        }
        setStatus(takeOver ? gettext("taking over…") : gettext("connecting…"), "connecting");
        let answer;
        try {
            answer = await askTicket(root);
        } catch (error) {
            failed(interpolate(gettext("not connected: %(reason)s"), {reason: error.message}, true));
            return;
        }
        opened = 0;
        const ws = openSocket(answer, takeOver ? "?takeover=1" : "");
        ws.binaryType = "arraybuffer";
        socket = ws;
        ws.addEventListener("open", () => {
            if (socket === ws) {
                opened = Date.now();
                setStatus(gettext("connected"), "connected");
                term.focus();
            }
        });
        ws.addEventListener("message", (event) => {
            term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
        });
        ws.addEventListener("close", (event) => {
            if (socket === ws) {
                socket = null;
                // A session that lasted starts the back-off again; one the server ends at once (the VM is
                // not running) keeps it growing.
                if (opened && Date.now() - opened > STEADY_MS) {
                    retry.succeeded();
                }
                closed(event);
            }
        });
    }

    function send(bytes) {
        if (socket && socket.readyState === WebSocket.OPEN) {
            socket.send(bytes);
        }
    }

    term.onData((data) => send(encoder.encode(data)));
    // Some terminal reports are raw bytes, not UTF-8 text.
    term.onBinary((data) => send(Uint8Array.from(data, (ch) => ch.charCodeAt(0) & 255)));
    reconnectButton.addEventListener("click", () => retry.now());
    takeOverButton.addEventListener("click", () => connect(true));
    connect(false);
})();
