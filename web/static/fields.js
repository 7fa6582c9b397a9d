// The issue form comes back with its mistakes marked. Once a marked field
// is edited, its mark and message go, so that a corrected value does not
// stand beside the old complaint until the next submit. Only progressive:
// without JavaScript the marks stay until the server judges again.
"use strict";
document.querySelectorAll("[aria-invalid=true]").forEach(function (field) {
  field.addEventListener("input", function () {
    field.removeAttribute("aria-invalid");
    (field.getAttribute("aria-describedby") || "").split(" ").forEach(function (id) {
      var msg = document.getElementById(id);
      if (msg && /-err$/.test(id)) {
        msg.hidden = true;
      }
    });
  }, { once: true });
});
