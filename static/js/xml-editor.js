// The XML editor: CodeMirror over the form's textarea (the plain textarea works without JS),
// the line the server objected to marked, and a well-formedness check while typing. The server
// decides; this only shows mistakes sooner.
(function () {
  "use strict";
  const area = document.getElementById("xml-text");
  if (!area || typeof CodeMirror === "undefined") { return; }
  const status = document.getElementById("xml-live-status");
  const editor = CodeMirror.fromTextArea(area, {
    mode: "application/xml",
    lineNumbers: true,
    indentUnit: 2,
    tabSize: 2,
    gutters: ["CodeMirror-linenumbers", "xml-error-gutter"],
  });
  let marked = null;

  function clearMark() {
    if (marked === null) { return; }
    editor.removeLineClass(marked, "background", "xml-error-line");
    editor.setGutterMarker(marked, "xml-error-gutter", null);
    marked = null;
  }

  function mark(line, message) {
    clearMark();
    if (!line || line < 1 || line > editor.lineCount()) { return; }
    marked = editor.getLineHandle(line - 1);
    editor.addLineClass(marked, "background", "xml-error-line");
    const marker = document.createElement("span");
    marker.className = "xml-error-marker";
    marker.textContent = "\u25cf";
    marker.title = message;
    editor.setGutterMarker(marked, "xml-error-gutter", marker);
  }

  function say(state, text) {
    if (!status) { return; }
    status.dataset.state = state;
    status.textContent = text;
  }

  function lineOf(text, index) {
    return text.slice(0, index).split("\n").length;
  }

  // A tag left open is noticed only where another one closes or the document ends: the mistake is the open
  // tag's line. libxml2 names it ("... mismatch: name line 2 and domain"); Chromium names only the tag
  // ("Unexpected closing tag: domain != name"), so look back for its last start tag not closed on its line.
  function openTagLine(text, detail, reported) {
    const named = /(?:mismatch: |in tag |Start Tag )\S+ line (\d+)/.exec(detail);
    if (named) { return parseInt(named[1], 10); }
    const unexpected = /Unexpected closing tag: \S+ != (\S+)/.exec(detail);
    if (!unexpected || !reported) { return null; }
    const tag = unexpected[1];
    const start = new RegExp("<" + tag.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(?:[\\s/>]|$)");
    const lines = text.split("\n");
    for (let i = Math.min(reported, lines.length) - 1; i >= 0; i -= 1) {
      if (start.test(lines[i]) && !lines[i].includes("</" + tag)) { return i + 1; }
    }
    return null;
  }

  // A DOCTYPE is refused before any parser sees it, here as on the server (entity attacks).
  const DOCTYPE = /^\ufeff?(?:\s|<\?[\s\S]*?\?>|<!--[\s\S]*?-->)*<!DOCTYPE/i;

  function check() {
    const text = editor.getValue();
    const doctype = DOCTYPE.exec(text);
    if (doctype) {
      mark(lineOf(text, doctype[0].length), gettext("DOCTYPE is not allowed"));
      say("error", gettext("DOCTYPE is not allowed."));
      return;
    }
    // Chromium styles the <parsererror> of a broken text inline: the page's CSP blocks that style (a
    // console note) in a document that is never rendered anyway.
    const doc = new DOMParser().parseFromString(text, "application/xml");
    const error = doc.getElementsByTagName("parsererror")[0];
    if (error) {
      const detail = (error.querySelector("div") || error).textContent.trim();
      const found = /line(?: number)? (\d+)/i.exec(detail);
      const reported = found ? parseInt(found[1], 10) : null;
      const line = openTagLine(text, detail, reported) || reported;
      mark(line, detail);
      say("error", line ? interpolate(gettext("Not well-formed XML (line %(line)s): %(detail)s"), { line: line, detail: detail }, true)
        : interpolate(gettext("Not well-formed XML: %(detail)s"), { detail: detail }, true));
      return;
    }
    if (doc.documentElement.nodeName !== "domain") {
      mark(1, gettext("the root element must be <domain>"));
      say("error", gettext("The root element must be <domain>."));
      return;
    }
    clearMark();
    say("ok", gettext("Well-formed XML; libvirt checks the rest when you save."));
  }

  // What the server reported stays marked until the text changes.
  const serverLine = parseInt(area.dataset.errorLine || "", 10);
  if (serverLine) {
    mark(serverLine, area.dataset.errorMessage || "");
    editor.scrollIntoView({ line: serverLine - 1, ch: 0 }, 120);
  }
  let timer = null;
  editor.on("change", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  document.getElementById("xml-form").dataset.editor = "ready";
})();
