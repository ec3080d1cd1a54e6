// The VM console page: noVNC's RFB client on a WebSocket opened with a fresh one-time ticket.
// The ticket (30 s, single use) is asked for by POST before every connection; the server
// resolves the VNC address itself, so nothing here names a host or port.
import RFB from "../vendor/novnc/core/rfb.js";
import KeyTable from "../vendor/novnc/core/input/keysym.js";
import keysyms from "../vendor/novnc/core/input/keysymdef.js";
import {askTicket, openSocket} from "./console-ticket.js";

const root = document.getElementById("console");
const screen = document.getElementById("console-screen");
const statusLine = document.getElementById("console-status");
const reconnectButton = document.getElementById("console-reconnect");
const scaleBox = document.getElementById("console-scale");
let rfb = null;

function setStatus(text, state) {
    statusLine.textContent = text;
    statusLine.dataset.state = state;
    root.dataset.state = state;
    reconnectButton.hidden = state === "connected" || state === "connecting";
}

async function connect() {
    if (rfb) {
        rfb.disconnect();
        rfb = null;
    }
    setStatus("connecting…", "connecting");
    let answer;
    try {
        answer = await askTicket(root);
    } catch (error) {
        setStatus(`not connected: ${error.message}`, "failed");
        return;
    }
    const socket = openSocket(answer);
    let closing = null;  // the server says why it refused or ended a session in the close frame
    socket.addEventListener("close", (event) => { closing = event; });
    rfb = new RFB(screen, socket, {shared: true});
    rfb.scaleViewport = scaleBox.checked;
    rfb.resizeSession = false;
    rfb.focusOnClick = true;
    rfb.addEventListener("connect", () => {
        setStatus("connected", "connected");
        rfb.focus();
    });
    rfb.addEventListener("disconnect", (event) => {
        const reason = closing && closing.reason ? closing.reason : "";
        if (reason) {
            setStatus(`disconnected: ${reason}`, "failed");
        } else {
            setStatus(event.detail.clean ? "disconnected" : "connection lost", "failed");
        }
        rfb = null;
    });
    rfb.addEventListener("credentialsrequired", () => {
        // The proxy answers the VNC password itself and offers the browser no authentication, so
        // this only happens with a VNC server the proxy does not know is protected.
        setStatus("the VNC server asks the browser for a password: the web console never sends one", "failed");
        rfb.disconnect();
    });
    rfb.addEventListener("securityfailure", (event) => {
        setStatus(`VNC security failure: ${event.detail.reason || event.detail.status}`, "failed");
    });
    rfb.addEventListener("desktopname", (event) => {
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

reconnectButton.addEventListener("click", connect);
connect();
