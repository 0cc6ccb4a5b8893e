// Send the CSRF token with every htmx request (forms also carry it as a field).
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRFToken"] = meta.content; }
  // A background refresh is not the person at work: it does not keep the session alive.
  if (event.detail.elt && event.detail.elt.hasAttribute("data-poll")) {
    event.detail.headers["X-Helpdesk-Poll"] = "1";
  }
});

// After logging in again in another tab, this page's CSRF token belongs to the ended session:
// coming back to the page fetches the new session's token, so what was typed can be sent.
var sessionEnded = false;
window.addEventListener("focus", function () {
  if (!sessionEnded) { return; }
  fetch("/session/csrf", {credentials: "same-origin", headers: {"Accept": "application/json"}})
    .then(function (response) { return response.ok ? response.json() : null; })
    .then(function (answer) {
      if (!answer || !answer.csrf_token) { return; }  // not logged in yet
      sessionEnded = false;
      var meta = document.querySelector('meta[name="csrf-token"]');
      if (meta) { meta.content = answer.csrf_token; }
      document.querySelectorAll('input[name="csrf_token"]').forEach(function (field) {
        field.value = answer.csrf_token;
      });
      var box = document.getElementById("request-error");
      if (box) { box.textContent = "You are logged in again: send what you typed now."; }
    })
    .catch(function () {});
});

// Whether the page holds something a person typed or chose and has not sent.
function typedSomething() {
  return Array.prototype.some.call(document.querySelectorAll("main textarea, main input"), function (field) {
    if (field.type === "file") { return field.files && field.files.length > 0; }
    if (field.type === "hidden" || field.type === "checkbox" || field.type === "radio") { return false; }
    return field.value !== field.defaultValue;
  });
}

// A response htmx does not swap (503 while the database is busy or away, a 500): say so, and
// leave the page as it is, so whatever the person typed is still in the form to send again.
document.addEventListener("htmx:responseError", function (event) {
  var status = event.detail.xhr ? event.detail.xhr.status : 0;
  var box = document.getElementById("request-error");
  if (!box) {
    box = document.createElement("p");
    box.id = "request-error";
    box.className = "error";
    box.setAttribute("role", "alert");
    (document.getElementById("main") || document.body).prepend(box);
  }
  if (status === 401) {  // the session ended under this page (idle, logged out elsewhere)
    var login = event.detail.xhr.getResponseHeader("X-Helpdesk-Login") || "/login";
    if (!typedSomething()) { window.location.assign(login); return; }  // nothing to lose
    box.textContent = "Your session has ended, so nothing was sent or changed. What you typed is " +
      "still here: log in again in another tab, then come back here and send it again. ";
    var link = document.createElement("a");
    link.href = login;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = "Log in (new tab)";
    box.appendChild(link);
    sessionEnded = true;
    return;
  }
  // A refusal that says why (404 "There is no incident INC-99999", say) is shown as it is.
  var said = "";
  if (status >= 400 && status < 500 && status !== 413 && event.detail.xhr.responseText) {
    var answer = new DOMParser().parseFromString(event.detail.xhr.responseText, "text/html");
    var reason = answer.querySelector("main .error") || answer.querySelector(".error");
    said = reason ? reason.textContent.trim() : "";
  }
  box.textContent = status === 503
    ? "The helpdesk is busy or cannot reach its database; nothing was changed. " +
      "What you typed is still here: try again in a few seconds."
    : status === 413
      ? "That was too large to send at once (the files together are over the server's limit); " +
        "nothing was changed. What you typed is still here: send fewer or smaller files."
      : said
        ? said + (/nothing was/i.test(said) ? "" : " Nothing was changed.")
        : "Something went wrong and nothing was changed; try again.";
});

// A table wider than a phone screen scrolls inside itself (helpdesk.css); one that does gets
// a tab stop, so the keyboard can scroll it too even when it holds no link or field.
(function () {
  function reachable() {
    document.querySelectorAll("main table").forEach(function (table) {
      var scrolls = table.scrollWidth > table.clientWidth + 1;
      if (scrolls && !table.hasAttribute("tabindex")) {
        table.setAttribute("tabindex", "0");
        table.dataset.scrollStop = "";
      } else if (!scrolls && table.dataset.scrollStop !== undefined) {
        table.removeAttribute("tabindex");
        delete table.dataset.scrollStop;
      }
    });
  }
  document.addEventListener("DOMContentLoaded", reachable);
  document.addEventListener("htmx:afterSettle", reachable);
  window.addEventListener("resize", reachable);
}());

// The header menu under the agent's name closes with Escape (focus back on its summary) and
// when clicking elsewhere, as menus do; without JavaScript it still opens and closes by click.
document.addEventListener("keydown", function (event) {
  if (event.key !== "Escape") { return; }
  var menu = event.target.closest && event.target.closest("details.menu[open]");
  if (menu) { menu.open = false; menu.querySelector("summary").focus(); }
});
document.addEventListener("click", function (event) {
  document.querySelectorAll("details.menu[open]").forEach(function (menu) {
    if (!menu.contains(event.target)) { menu.open = false; }
  });
});

// An unsent reply survives the other actions on the incident page (priority, status, assign,
// take, a conflict view): they swap the whole incident body, which holds the reply form, so its
// text, visibility and chosen files are carried over into the new one. The reply's own answer
// decides for itself (sent: an empty box; refused: the server shows the text back), except for
// the chosen files, which a page cannot send back: a reply held back (409) keeps them here.
(function () {
  var kept = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!event.detail.shouldSwap || !target || target.id !== "incident-body") { return; }
    var reply = target.querySelector("form.reply");
    var source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!reply) { return; }
    var body = reply.querySelector("#reply-body");
    var files = reply.querySelector("#reply-files");
    var visibility = reply.querySelector('input[name="visibility"]:checked');
    if (source && reply.contains(source)) {
      // Only a reply held back because the conversation moved (409): its files were fine. A
      // refused file (422) is chosen again by the agent, not sent again as it was.
      var held = event.detail.xhr && event.detail.xhr.status === 409;
      if (!held || !files || !files.files.length) { return; }
      kept = {text: "", visibility: null, files: files, form: reply.getAttribute("action")};
      files.remove();
      return;
    }
    if (!body || (!body.value.trim() && !(files && files.files.length))) { return; }
    kept = {text: body.value, visibility: visibility ? visibility.value : null,
            files: files && files.files.length ? files : null, form: reply.getAttribute("action")};
    if (kept.files) { kept.files.remove(); }  // the element itself, with its chosen files
  });
  document.addEventListener("htmx:afterSwap", function () {  // (before settling: no gap to type in)
    var body = kept && document.getElementById("reply-body");
    if (!body) { return; }  // no reply box in this view (a conflict): kept for the next one
    var reply = body.closest("form.reply");
    if (!reply || reply.getAttribute("action") !== kept.form) { kept = null; return; }  // another incident
    if (!body.value.trim()) { body.value = kept.text; }
    var choice = kept.visibility && document.querySelector('form.reply input[name="visibility"][value="' +
                                                           kept.visibility + '"]');
    if (choice) { choice.checked = true; }
    var files = document.getElementById("reply-files");
    if (kept.files && files && !files.files.length) {
      files.replaceWith(kept.files);
      var lost = reply.querySelector("[data-files-lost]");
      if (lost) {
        var names = Array.prototype.map.call(kept.files.files, function (f) { return f.name; });
        lost.textContent = "Nothing was saved; your files are still chosen: " + names.join(", ") + ".";
      }
    }
    kept = null;
  });
}());

// Choosing a team narrows its agent box to that team's agents (the agent boxes group agents by
// team); an agent chosen under another team is unchosen. With no team chosen, all are offered.
// Without JavaScript every group stays, and the server refuses an agent outside the team.
(function () {
  function narrow(team) {
    var agents = document.getElementById(team.getAttribute("data-narrows"));
    if (!agents) { return; }
    agents.querySelectorAll("optgroup[data-team]").forEach(function (group) {
      var shown = !team.value || group.getAttribute("data-team") === team.value;
      group.hidden = !shown;
      group.disabled = !shown;
    });
    var chosen = agents.selectedOptions[0];
    if (chosen && chosen.parentElement && chosen.parentElement.disabled) {
      // The same agent under the chosen team (an agent of both teams) stays chosen.
      var same = agents.querySelector('optgroup[data-team="' + team.value + '"] option[value="' +
                                      chosen.value + '"]');
      if (same) { same.selected = true; } else { agents.value = ""; }
    }
  }
  function all() { document.querySelectorAll("select[data-narrows]").forEach(narrow); }
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-narrows]")) { narrow(event.target); }
  });
  document.addEventListener("DOMContentLoaded", all);
  document.addEventListener("htmx:afterSettle", all);
}());
