// The developer portal's one script: the copy button beside a secret.
// Everything else works without it; without it, the secret is selected
// by hand from its read-only field.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.dataset.copy);
    var status = document.getElementById("copied");
    if (!field || !navigator.clipboard) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(field.value).then(function () {
        button.textContent = "Copied";
        if (status) { status.textContent = "Copied to the clipboard."; }
      }, function () {
        field.select();
        if (status) { status.textContent = "Copying failed: the key is selected, copy it with your keyboard."; }
      });
    });
  });
});
