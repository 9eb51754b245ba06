// The overview's pause toggle: while paused, htmx's polling requests of the live section are
// cancelled before they leave. Nothing else here: pages work without this script.
(function () {
  "use strict";
  let paused = false;
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (paused && event.target.closest("[data-live]")) {
      event.preventDefault();
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    const button = document.getElementById("pause");
    if (!button) {
      return;
    }
    button.addEventListener("click", function () {
      paused = !paused;
      button.setAttribute("aria-pressed", String(paused));
      button.textContent = paused ? "Resume live refresh" : "Pause live refresh";
      document.body.classList.toggle("paused", paused);
    });
  });
})();
