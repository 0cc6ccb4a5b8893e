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
    : "Something went wrong and nothing was changed; try again.";
});
