// Send the CSRF token with every htmx request (forms also carry it as a field).
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRFToken"] = meta.content; }
});

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
  box.textContent = status === 503
    ? "The helpdesk is busy or cannot reach its database; nothing was changed. " +
      "What you typed is still here: try again in a few seconds."
    : status === 413
      ? "That was too large to send at once (the files together are over the server's limit); " +
        "nothing was changed. What you typed is still here: send fewer or smaller files."
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
