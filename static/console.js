// Keyboard shortcuts and small console behaviours for agents; loaded on every agent page.
// No inline scripts (CSP) and no eval: plain listeners on the document, so they keep working
// after htmx swaps parts of the page.
//
// Queues (rows are <tr data-row>): j / k select the next / previous row (its a[data-open]
// takes the focus), o (or Enter on the row link) opens it, t takes it ([data-shortcut=take]).
// Incident page: r focuses the reply box, n switches to an internal note and focuses it,
// t takes the incident. t only claims (claim_only=1): never resumes a pending incident, and
// does nothing to one already yours. ? shows the list; Escape closes it. Nothing fires while typing in a
// field or with Ctrl, Alt or Meta held.
(function () {
  "use strict";

  var SHORTCUTS = [
    ["j", "Queue: select the next incident"],
    ["k", "Queue: select the previous incident"],
    ["o", "Queue: open the selected incident (Enter works too)"],
    ["t", "Take: make it mine (queue: the selected row); a pending one stays pending"],
    ["r", "Incident: write in the reply box"],
    ["n", "Incident: write an internal note"],
    ["?", "Show these shortcuts"]
  ];
  var SELECTED_KEY = "helpdesk.console.selected:";
  var timelineFilter = null;

  function typing(target) {
    if (!target || !target.closest) { return false; }
    if (target.isContentEditable) { return true; }
    return !!target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
  }

  // -- queues ---------------------------------------------------------------------------------
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-row]")); }

  function selectedRow() { return document.querySelector("tr[data-row][data-selected]"); }

  function select(row) {
    rows().forEach(function (r) { r.removeAttribute("data-selected"); });
    if (!row) { return; }
    row.setAttribute("data-selected", "");
    var link = row.querySelector("a[data-open]");
    if (link) {
      link.focus();
      try { sessionStorage.setItem(SELECTED_KEY + location.pathname, link.getAttribute("href")); } catch (e) { /* private mode */ }
    } else {
      row.scrollIntoView({block: "nearest"});
    }
  }

  function move(step) {
    var all = rows();
    if (!all.length) { return false; }
    var current = all.indexOf(selectedRow());
    if (current < 0) {
      // Start from the row holding the focus, if any, else from the edge.
      var focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest("tr[data-row]") : null;
      current = focused ? all.indexOf(focused) : (step > 0 ? -1 : all.length);
      if (focused) { current -= step; }
    }
    var next = Math.min(all.length - 1, Math.max(0, current + step));
    select(all[next]);
    return true;
  }

  // The queue list is swapped (filters, live refresh, back from a take): keep the selection on
  // the same incident so j, k, o and t carry on where the agent was.
  function restoreSelection() {
    if (!rows().length || selectedRow()) { return; }
    var href = null;
    try { href = sessionStorage.getItem(SELECTED_KEY + location.pathname); } catch (e) { /* private mode */ }
    if (!href) { return; }
    var link = document.querySelector("tr[data-row] a[data-open][href='" + href.replace(/'/g, "") + "']");
    if (link) {
      var row = link.closest("tr[data-row]");
      row.setAttribute("data-selected", "");
      if (!document.activeElement || document.activeElement === document.body) { link.focus(); }
    }
  }

  function clickIn(scope, selector) {
    var control = scope && scope.querySelector(selector);
    if (!control || control.disabled) { return false; }
    control.click();
    return true;
  }

  // The t key takes "only": it claims an incident that is not yours yet and moves nothing else
  // (a pending one stays pending; one already yours stays as it is). The Take button itself,
  // clicked, still starts work. The field rides along with this one submission only.
  function takeIn(scope) {
    var control = scope && scope.querySelector("[data-shortcut=take]");
    if (!control || control.disabled || !control.form) { return false; }
    var only = document.createElement("input");
    only.type = "hidden";
    only.name = "claim_only";
    only.value = "1";
    control.form.appendChild(only);
    try { control.click(); } finally { only.remove(); }
    return true;
  }

  // -- incident page --------------------------------------------------------------------------
  function focusReply(internal) {
    var box = document.querySelector("[data-shortcut=reply]");
    if (!box) { return false; }
    if (internal) {
      var note = document.querySelector("[data-shortcut=note]");
      if (note) { note.checked = true; note.dispatchEvent(new Event("change", {bubbles: true})); }
    }
    box.focus();
    return true;
  }

  function applyTimelineFilter(root) {
    if (!timelineFilter) { return; }
    var list = (root || document).querySelector(".timeline[data-show]");
    if (list) { list.setAttribute("data-show", timelineFilter); }
    (root || document).querySelectorAll("[data-timeline-filter]").forEach(function (link) {
      if (link.getAttribute("data-timeline-filter") === timelineFilter) { link.setAttribute("aria-current", "true"); }
      else { link.removeAttribute("aria-current"); }
    });
  }

  function focusTarget(element) {
    if (!element) { return; }
    if (!element.matches("a[href], button, input, select, textarea, [tabindex]")) {
      element.setAttribute("tabindex", "-1");
    }
    element.focus();
  }

  // After an htmx action on the incident: announce what changed (politely) and put the focus on
  // it, so a keyboard or screen-reader user is never dropped at the top of the page.
  function afterIncidentSwap(body) {
    applyTimelineFilter(body);
    var message = body.getAttribute("data-announce");
    var live = document.getElementById("console-announce");
    if (live) {
      // A refusal announces nothing (its error is an alert): the last success must not linger.
      live.textContent = "";
      if (message) { window.setTimeout(function () { live.textContent = message; }, 50); }
    }
    var id = body.getAttribute("data-focus");
    if (id) { focusTarget(document.getElementById(id)); }
  }

  // -- help -----------------------------------------------------------------------------------
  function helpDialog() {
    var dialog = document.getElementById("shortcut-help");
    if (dialog) { return dialog; }
    dialog = document.createElement("dialog");
    dialog.id = "shortcut-help";
    dialog.className = "shortcuts";
    dialog.setAttribute("aria-labelledby", "shortcut-help-title");
    var title = document.createElement("h2");
    title.id = "shortcut-help-title";
    title.textContent = "Keyboard shortcuts";
    dialog.appendChild(title);
    var table = document.createElement("table");
    var body = document.createElement("tbody");
    SHORTCUTS.forEach(function (item) {
      var tr = document.createElement("tr");
      var key = document.createElement("th");
      key.scope = "row";
      var kbd = document.createElement("kbd");
      kbd.textContent = item[0];
      key.appendChild(kbd);
      var what = document.createElement("td");
      what.textContent = item[1];
      tr.appendChild(key);
      tr.appendChild(what);
      body.appendChild(tr);
    });
    table.appendChild(body);
    dialog.appendChild(table);
    var note = document.createElement("p");
    note.textContent = "Shortcuts do nothing while you type in a field. Escape closes this list.";
    dialog.appendChild(note);
    var form = document.createElement("form");
    form.method = "dialog";
    var close = document.createElement("button");
    close.type = "submit";
    close.textContent = "Close";
    form.appendChild(close);
    dialog.appendChild(form);
    document.body.appendChild(dialog);
    return dialog;
  }

  // -- wiring ---------------------------------------------------------------------------------
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) { return; }
    if (typing(event.target)) { return; }
    var open = document.querySelector("dialog[open]");
    if (open) { return; }  // a dialog (help or other) has the keyboard; Escape closes it natively
    var key = event.key;
    var handled = false;
    if (key === "?") {
      helpDialog().showModal();
      handled = true;
    } else if (event.shiftKey) {
      return;
    } else if (key === "j") {
      handled = move(1);
    } else if (key === "k") {
      handled = move(-1);
    } else if (key === "o") {
      handled = clickIn(selectedRow(), "a[data-open]");
    } else if (key === "Enter" && selectedRow() && event.target === document.body) {
      handled = clickIn(selectedRow(), "a[data-open]");
    } else if (key === "t") {
      handled = rows().length ? takeIn(selectedRow()) : takeIn(document);
    } else if (key === "r") {
      handled = focusReply(false);
    } else if (key === "n") {
      handled = focusReply(true);
    }
    if (handled) { event.preventDefault(); }
  });

  // Edit details: its first button is the requester Search (so that, without scripts, Enter in
  // the search box searches and keeps the other edits). With scripts, Enter in the search box
  // asks for the matches alone, and Enter in another field saves, as it always did.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.isComposing || event.defaultPrevented) { return; }
    var field = event.target;
    var form = field && field.form;
    if (!form || !form.hasAttribute("data-details") || !/^(INPUT|SELECT)$/.test(field.tagName)) { return; }
    event.preventDefault();
    if (field.id === "d-requester-query") {
      var search = document.getElementById("d-requester-search");
      if (search && window.htmx) { window.htmx.trigger(search, "submit"); }
    } else {
      form.requestSubmit(form.querySelector("button[data-save]"));
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target : null;
    if (!target) { return; }
    // Clicking a row (not its controls) selects it, so the keys go on from there.
    var row = target.closest("tr[data-row]");
    if (row && !target.closest("a, button, input, select, textarea, label")) { select(row); }
    // Timeline filter: switch in place (the links reload with ?show= without JavaScript).
    var filter = target.closest("[data-timeline-filter]");
    if (filter && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      event.preventDefault();
      event.stopPropagation();
      timelineFilter = filter.getAttribute("data-timeline-filter");
      applyTimelineFilter(document);
      try { history.replaceState(history.state, "", filter.getAttribute("href")); } catch (e) { /* ignore */ }
      return;
    }
    // Escalate quick action: open the escalation form and put the cursor in its reason.
    var escalate = target.closest("[data-open-escalation]");
    if (escalate) {
      var form = document.querySelector("form[action$='/escalate']");
      if (form) {
        event.preventDefault();
        var details = form.closest("details");
        if (details) { details.open = true; }
        focusTarget(form.querySelector("input:not([type=hidden]), textarea") || form);
      }
    }
  }, true);

  // Resolve with a canned resolution: choosing one fills the note, unless the agent wrote their own.
  document.addEventListener("change", function (event) {
    var picker = event.target;
    if (!picker.matches || !picker.matches("select[data-canned-for]")) { return; }
    var note = document.getElementById(picker.getAttribute("data-canned-for"));
    if (!note) { return; }
    var texts = Array.prototype.map.call(picker.options, function (o) { return o.getAttribute("data-note"); });
    if (!note.value.trim() || texts.indexOf(note.value.trim()) >= 0) {
      note.value = picker.options[picker.selectedIndex].getAttribute("data-note") || "";
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var elt = event.detail && event.detail.elt;
    var body = document.getElementById("incident-body");
    if (elt === document.body) {
      ready();  // a boosted page load: start from what the new page says
      if (body) { afterIncidentSwap(body); }
      return;
    }
    if (body && elt && (elt === body || elt.contains(body))) { afterIncidentSwap(body); }
    restoreSelection();
  });

  function ready() {
    var list = document.querySelector(".timeline[data-show]");
    if (list) { timelineFilter = list.getAttribute("data-show"); }
    restoreSelection();
    // Arriving from a form without JavaScript's help (redirect with #fragment): focus it too.
    if (location.hash.length > 1) {
      var target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (target && target.closest("#incident-body")) { focusTarget(target); }
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", ready); } else { ready(); }
  document.addEventListener("htmx:historyRestore", ready);
}());
