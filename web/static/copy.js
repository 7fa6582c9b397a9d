// Copy buttons beside the token, its header field and its address. Only
// progressive: without JavaScript (or a clipboard) the text stays
// selectable and nothing else changes.
"use strict";
document.querySelectorAll("code[data-copy]").forEach(function (code) {
  if (!navigator.clipboard) {
    return;
  }
  var button = document.createElement("button");
  button.type = "button";
  button.className = "copy quiet-dark";
  button.textContent = code.dataset.copy;
  button.setAttribute("aria-label", code.dataset.copy + ": " + code.textContent);
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(code.textContent).then(function () {
      button.textContent = code.dataset.copied;
    });
  });
  code.after(button);
});
