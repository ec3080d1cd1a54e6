// Confirmations in a <dialog> where JavaScript runs; without it the server serves its confirmation page
// (and checks the confirmation either way). Any page may mark:
//   <form method="post" data-confirm="Sentence.">                   the whole form
//   <button type="submit" data-confirm="Sentence." [formaction=…]>  one submit button (e.g. of a shared form)
//   <a href="URL" data-confirm="Sentence.">                         a link to a confirmation page: posts to URL
// Optional on the same element: data-confirm-title ("Force off web-01?"), data-confirm-button (the
// confirming button's words; default the clicked button's), data-confirm-field ("name=value" added to
// the request once confirmed; default "confirm=yes", what the panel's confirmation pages send).
(function () {
  "use strict";
  let dialog = null;
  const passing = new WeakSet();  // forms submitting after a confirmation: let them through

  function build() {
    dialog = document.createElement("dialog");
    dialog.id = "confirm-dialog";
    const title = document.createElement("h2");
    const sentence = document.createElement("p");
    const actions = document.createElement("form");
    actions.method = "dialog";
    const cancel = document.createElement("button");
    cancel.value = "cancel";
    cancel.textContent = gettext("Cancel");
    const ok = document.createElement("button");
    ok.value = "confirm";
    ok.className = "danger";
    actions.append(cancel, ok);
    dialog.append(title, sentence, actions);
    document.body.append(dialog);
    return dialog;
  }

  function ask(marked, fallbackLabel, then) {
    const box = dialog || build();
    const [title, sentence, actions] = box.children;
    const label = marked.dataset.confirmButton || fallbackLabel || gettext("Confirm");
    title.textContent = marked.dataset.confirmTitle || interpolate(gettext("%(action)s?"), { action: label }, true);
    sentence.textContent = marked.dataset.confirm;
    actions.lastChild.textContent = label;
    box.returnValue = "";
    box.onclose = function () { if (box.returnValue === "confirm") { then(); } };
    box.showModal();
    actions.firstChild.focus();  // the safe choice is the default one
  }

  function field(marked) {
    const pair = (marked.dataset.confirmField || "confirm=yes").split("=");
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = pair[0];
    input.value = pair.slice(1).join("=");
    return input;
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) { return input.value; }
    const cookie = document.cookie.split("; ").find(function (c) { return c.startsWith("csrftoken="); });
    return cookie ? cookie.slice("csrftoken=".length) : "";
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (passing.has(form)) { return; }
    const submitter = event.submitter;
    const marked = submitter && submitter.dataset.confirm !== undefined ? submitter
      : form.dataset.confirm !== undefined ? form : null;
    if (!marked) { return; }
    event.preventDefault();
    ask(marked, submitter ? submitter.textContent.trim() : "", function () {
      const extra = field(marked);
      form.append(extra);
      // The request's fields are gathered at once, so the extra field can go again (a page kept in the
      // back/forward cache must not confirm its next submission by itself).
      passing.add(form);
      try {
        if (submitter) { form.requestSubmit(submitter); } else { form.requestSubmit(); }
      } finally {
        passing.delete(form);
        extra.remove();
      }
    });
  }, true);

  document.addEventListener("click", function (event) {
    const link = event.target.closest && event.target.closest("a[data-confirm]");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    event.preventDefault();
    ask(link, link.textContent.trim().replace(/…$/, ""), function () {
      const form = document.createElement("form");
      form.method = "post";
      form.action = link.href;
      const token = document.createElement("input");
      token.type = "hidden";
      token.name = "csrfmiddlewaretoken";
      token.value = csrfToken();
      form.append(token, field(link));
      document.body.append(form);
      form.submit();
    });
  });
}());
