// Chosen files are checked against the server's limits before the form is sent. A request
// over max_request_bytes is refused by the server before the app reads it, so the page that
// answers cannot give the typed text back; refused here, nothing leaves the page. The server
// still checks both limits: this only spares the round trip and the lost words.
(function () {
  "use strict";

  function size(bytes) {  // as the server says it (helpdesk.words.format_size)
    if (bytes >= 1048576) return (bytes / 1048576).toFixed(1) + " MB";
    return Math.max(1, Math.ceil(bytes / 1024)) + " KB";
  }

  function textBytes(form) {
    let total = 0;
    for (const field of form.querySelectorAll("textarea, input:not([type=file])")) {
      total += new Blob([field.name + "=" + field.value]).size + 200;  // part headers
    }
    return total;
  }

  function check(input) {
    const perFile = Number(input.dataset.maxFileBytes) || 0;
    const perRequest = Number(input.dataset.maxRequestBytes) || 0;
    let message = "";
    let total = input.form ? textBytes(input.form) : 0;
    for (const file of input.files) {
      total += file.size + 300;
      if (perFile && file.size > perFile) {
        message = `${file.name} is ${size(file.size)}; one file may be at most ${size(perFile)}.`;
        break;
      }
    }
    if (!message && perRequest && total > perRequest) {
      message = `These files and your text come to ${size(total)}; one message may carry at most ` +
        `${size(perRequest)}. Send fewer or smaller files, and the rest in another message.`;
    }
    input.setCustomValidity(message);
    return message;
  }

  const selector = "input[type=file][data-max-request-bytes]";
  // For scripts that send a form themselves (Send with macro): the first refusal, or "".
  window.checkChosenFiles = function (form) {
    for (const input of form.querySelectorAll(selector)) {
      const message = check(input);
      if (message) return message;
    }
    return "";
  };
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches(selector) && check(event.target)) {
      event.target.reportValidity();
    }
  });
  // The text counts too: shortened, it may make the message fit again (the browser checks
  // the standing verdict before the form's submit event, so it is brought up to date here).
  document.addEventListener("input", function (event) {
    const form = event.target.form;
    if (!form || (event.target.matches && event.target.matches(selector))) return;
    for (const input of form.querySelectorAll(selector)) {
      if (input.validationMessage) check(input);
    }
  });
  // Typed after the files were chosen, the text is checked again on send.
  document.addEventListener("submit", function (event) {
    for (const input of event.target.querySelectorAll(selector)) {
      if (check(input)) {
        event.preventDefault();
        event.stopImmediatePropagation();
        input.reportValidity();
        return;
      }
    }
  }, true);
})();
