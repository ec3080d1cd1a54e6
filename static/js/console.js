// The VM console page: noVNC's RFB client on a WebSocket opened with a fresh one-time ticket.
// The ticket (30 s, single use) is asked for by POST before every connection; the server
// resolves the VNC address itself, so nothing here names a host or port. A connection that fails or
// is lost is tried again after a back-off (console-ticket.js), the next attempt's time shown; Reconnect
// tries at once.
import RFB from "../vendor/novnc/core/rfb.js";
import KeyTable from "../vendor/novnc/core/input/keysym.js";
import keysyms from "../vendor/novnc/core/input/keysymdef.js";
import {Backoff, askTicket, openSocket, waitWords} from "./console-ticket.js";

// Words from the panel's JavaScript catalog (/jsi18n/, a classic script before this module).
const {gettext, interpolate} = window;
const notConnected = (reason) => interpolate(gettext("not connected: %(reason)s"), {reason}, true);

const CONNECT_DEADLINE_MS = 20000;  // a socket that has not brought the screen up by then counts as failed
const root = document.getElementById("console");
const screen = document.getElementById("console-screen");
const statusLine = document.getElementById("console-status");
const reconnectButton = document.getElementById("console-reconnect");
const scaleBox = document.getElementById("console-scale");
let rfb = null;
let problem = "";
const retry = new Backoff(connect, (seconds, at) => setStatus(waitWords(problem, seconds, at), "failed"));
root.dataset.started = "yes";  // js/console-watch.js: the scripts loaded

function setStatus(text, state) {
    statusLine.textContent = text;
    statusLine.dataset.state = state;
    root.dataset.state = state;
    reconnectButton.hidden = state === "connected" || state === "connecting";
}

// Every way an attempt ends short: say why, and try again after the back-off.
function failed(words) {
    problem = words;
    retry.failed();
}

async function connect() {
    retry.cancel();
    if (rfb) {
        const old = rfb;
        rfb = null;
        old.disconnect();
    }
    setStatus(gettext("connecting…"), "connecting");
    let answer;
    try {
        answer = await askTicket(root);
    } catch (error) {
        failed(notConnected(error.message));
        return;
    }
    const socket = openSocket(answer);
    let closing = null;  // the server says why it refused or ended a session in the close frame
    let security = "";  // noVNC's words when the VNC handshake fails
    socket.addEventListener("close", (event) => { closing = event; });
    let mine;
    try {
        mine = new RFB(screen, socket, {shared: true});
    } catch (error) {
        socket.close();
        failed(notConnected(error.message));
        return;
    }
    rfb = mine;
    const deadline = setTimeout(() => {
        if (rfb === mine) {
            rfb = null;
            mine.disconnect();
            failed(notConnected(interpolate(gettext("no screen within %(seconds)s s"),
                                            {seconds: CONNECT_DEADLINE_MS / 1000}, true)));
        }
    }, CONNECT_DEADLINE_MS);
    mine.scaleViewport = scaleBox.checked;
    mine.resizeSession = false;
    mine.focusOnClick = true;
    mine.addEventListener("connect", () => {
        clearTimeout(deadline);
        if (rfb !== mine) {
            return;
        }
        retry.succeeded();
        setStatus(gettext("connected"), "connected");
        mine.focus();
    });
    mine.addEventListener("disconnect", (event) => {
        clearTimeout(deadline);
        if (rfb !== mine) {
            return;  // replaced by a newer attempt, or already counted as failed
        }
        rfb = null;
        const reason = closing && closing.reason ? closing.reason : "";
        if (security) {
            failed(security);
        } else if (reason) {
            failed(interpolate(gettext("disconnected: %(reason)s"), {reason}, true));
        } else {
            failed(event.detail.clean ? gettext("disconnected") : gettext("connection lost"));
        }
    });
    mine.addEventListener("credentialsrequired", () => {
        // The proxy answers the VNC password itself and offers the browser no authentication, so
        // this only happens with a VNC server the proxy does not know is protected.
        problem = gettext("the VNC server asks the browser for a password: the web console never sends one");
        rfb = null;
        mine.disconnect();
        setStatus(problem, "failed");  // trying again would ask again: no retry
    });
    mine.addEventListener("securityfailure", (event) => {
        security = interpolate(gettext("VNC security failure: %(reason)s"),
                               {reason: event.detail.reason || event.detail.status}, true);
    });
    mine.addEventListener("desktopname", (event) => {
        screen.title = event.detail.name;
    });
}

// A key combination: press every key in order, release in reverse order.
function sendCombo(keys) {
    if (!rfb) {
        return;
    }
    for (const [keysym, code] of keys) {
        rfb.sendKey(keysym, code, true);
    }
    for (const [keysym, code] of [...keys].reverse()) {
        rfb.sendKey(keysym, code, false);
    }
    rfb.focus();
}

const CTRL = [KeyTable.XK_Control_L, "ControlLeft"];
const ALT = [KeyTable.XK_Alt_L, "AltLeft"];
const COMBOS = {
    "alt-tab": [ALT, [KeyTable.XK_Tab, "Tab"]],
    "esc": [[KeyTable.XK_Escape, "Escape"]],
    "ctrl-esc": [CTRL, [KeyTable.XK_Escape, "Escape"]],
    "alt-f4": [ALT, [KeyTable.XK_F4, "F4"]],
};
for (let n = 1; n <= 12; n++) {
    COMBOS[`ctrl-alt-f${n}`] = [CTRL, ALT, [KeyTable.XK_F1 + n - 1, `F${n}`]];
}

document.getElementById("console-cad").addEventListener("click", () => {
    if (rfb) {
        rfb.sendCtrlAltDel();
        rfb.focus();
    }
});

document.getElementById("console-keys").addEventListener("change", (event) => {
    const combo = COMBOS[event.target.value];
    if (combo) {
        sendCombo(combo);
    }
    event.target.value = "";
});

scaleBox.addEventListener("change", () => {
    if (rfb) {
        rfb.scaleViewport = scaleBox.checked;
    }
});

document.getElementById("console-fullscreen").addEventListener("click", () => {
    if (document.fullscreenElement) {
        document.exitFullscreen();
    } else {
        screen.requestFullscreen().then(() => rfb && rfb.focus()).catch(() => {});
    }
});

// Typing text as key presses works whatever the guest runs (a BIOS, a login prompt), unlike a clipboard.
document.getElementById("console-type").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = document.getElementById("console-text");
    if (!rfb) {
        return;
    }
    for (const ch of box.value) {
        if (ch === "\n") {
            rfb.sendKey(KeyTable.XK_Return, "Enter");
        } else {
            rfb.sendKey(keysyms.lookup(ch.codePointAt(0)), null);
        }
    }
    box.value = "";
    rfb.focus();
});

reconnectButton.addEventListener("click", () => retry.now());
connect();
