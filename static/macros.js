// Canned replies (macros) in the reply box: picking one fills the reply with its text for this
// incident (the agent may edit it); "Send with macro" sends the reply and the macro's actions as
// one change and, when refused, shows why and keeps everything typed. Without this script the
// form still posts (see templates/_reply_tools.html).
(function () {
  "use strict";
  if (window.helpdeskMacros) { return; }  // loaded by the page and again by the reply box
  window.helpdeskMacros = true;

  function tools(element) { return element.closest("[data-macro-tools]"); }
  function replyBox(form) {
    return form.querySelector("#reply-body") || form.querySelector("textarea[name=body]");
  }
  function say(box, text) { if (box) { box.textContent = text; } }
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  document.addEventListener("change", function (event) {
    var pick = event.target;
    if (!pick.matches || !pick.matches("[data-macro-pick]")) { return; }
    var box = tools(pick);
    var does = box.querySelector("[data-macro-does]");
    var option = pick.options[pick.selectedIndex];
    say(box.querySelector("[data-macro-result]"), "");
    if (!option || !option.value) { say(does, ""); return; }
    fetch(option.getAttribute("data-fill"), {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (macro) {
        var form = pick.form;
        var reply = form && replyBox(form);
        if (reply) { reply.value = macro.body; }
        var radio = form && form.querySelector('input[name="visibility"][value="' + (macro.public ? "public" : "note") + '"]');
        if (radio) { radio.checked = true; radio.dispatchEvent(new Event("change", {bubbles: true})); }
        say(does, "“" + macro.name + "” filled the " + (macro.public ? "reply to the customer" : "internal note") +
            "; edit it if you like. Sent with the macro, it also: " + (macro.does.length ? macro.does.join("; ") : "nothing else") + ".");
        if (reply) { reply.focus(); }
      })
      .catch(function () {
        say(box.querySelector("[data-macro-result]"), "Could not load that macro; try again.");
      });
  });

  // The macro form's status action: show only the fields the chosen target status needs.
  function showNeeded(select) {
    var needs = JSON.parse(select.getAttribute("data-shows") || "{}")[select.value] || [];
    var own = select.closest("[data-param]");
    select.closest("fieldset").querySelectorAll("[data-param]").forEach(function (part) {
      if (part !== own) { part.hidden = needs.indexOf(part.getAttribute("data-param")) < 0; }
    });
  }
  function showAllNeeded() { document.querySelectorAll("select[data-shows]").forEach(showNeeded); }
  document.addEventListener("DOMContentLoaded", showAllNeeded);
  document.addEventListener("htmx:afterSettle", showAllNeeded);
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-shows]")) { showNeeded(event.target); }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-macro-send]");
    if (!button) { return; }
    event.preventDefault();  // no plain or htmx submit: this script sends and reports
    var form = button.form;
    var box = tools(button);
    var result = box.querySelector("[data-macro-result]");
    var pick = box.querySelector("[data-macro-pick]");
    if (!pick || !pick.value) { say(result, "Choose a macro first."); pick && pick.focus(); return; }
    // Files over the size limits are refused here, before sending (static/files.js).
    var tooBig = window.checkChosenFiles ? window.checkChosenFiles(form) : "";
    if (tooBig) { say(result, tooBig + " Nothing was sent."); return; }
    button.disabled = true;
    say(result, "");
    fetch(button.getAttribute("formaction"), {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: {"Accept": "application/json", "X-CSRFToken": csrf()}
    }).then(function (response) {
      // A repeat of a request already saved is answered with the incident page: go there.
      if (response.redirected) { return {ok: true, url: response.url}; }
      if (response.status === 413) {
        return {ok: false, error: "The files are too large to send at once; nothing was changed. " +
                "Choose fewer or smaller files."};
      }
      return response.json().catch(function () { return {ok: false, error: null}; });
    }).then(function (answer) {
      if (answer.ok) { window.location.assign(answer.url); return; }
      // Someone else changed the incident (or wrote to the customer): the next send is meant
      // for what the agent has now been told about.
      var version = form.querySelector('input[name="macro_version"]');
      if (version && answer.version) { version.value = answer.version; }
      var seen = form.querySelector('input[name="seen"]');
      if (seen && answer.seen) { seen.value = answer.seen; }
      button.disabled = false;
      say(result, answer.error || "Something went wrong and nothing was changed; try again.");
    }).catch(function () {
      button.disabled = false;
      say(result, "The helpdesk could not be reached; nothing was changed. What you typed is still here.");
    });
  });
}());
