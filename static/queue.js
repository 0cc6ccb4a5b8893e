/* Queue page (helper B): select all, the bulk bar's fields for the chosen action, no list
   refresh while rows are selected, and a saved view takes the filters as they are now. */
(function () {
  "use strict";
  function rows() { return document.querySelectorAll("input[data-select]"); }
  function anySelected() { return Array.prototype.some.call(rows(), function (box) { return box.checked; }); }

  function showBulkFields() {
    var form = document.getElementById("bulk-form");
    if (!form) return;
    var action = form.elements.action.value;
    var status = form.elements.status ? form.elements.status.value : "";
    form.querySelectorAll("[data-for]").forEach(function (field) {
      var wanted = field.getAttribute("data-for") === action;
      var needs = field.getAttribute("data-status");
      if (wanted && needs) wanted = needs === status || (needs === "resolved" && status === "closed");
      field.hidden = !wanted;
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("input[data-select-all]")) {
      rows().forEach(function (box) { box.checked = target.checked; });
    } else if (target.matches && target.matches("input[data-select]")) {
      var all = document.querySelector("input[data-select-all]");
      if (all) all.checked = Array.prototype.every.call(rows(), function (box) { return box.checked; });
    } else if (target.closest && target.closest("#bulk-form")) {
      showBulkFields();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("view-form")) return;
    var filters = document.querySelector("form.filters");
    if (!filters) return;
    var params = new URLSearchParams();
    new FormData(filters).forEach(function (value, key) { if (value && key !== "view") params.append(key, value); });
    form.elements.query.value = params.toString();
  }, true);

  // The list refreshes itself every few seconds; not while the agent has rows selected, nor
  // while the keyboard focus is in it (the new list would drop it back to the page's start).
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (!elt || elt.id !== "queue-list") return;
    if (anySelected() || elt.contains(document.activeElement)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", showBulkFields);
  document.addEventListener("htmx:load", showBulkFields);
  showBulkFields();
})();
