// Small page behaviours shared by every page. htmx does the rest.
"use strict";

// Polling panels use `every Ns [document.visibilityState === 'visible']`; when the tab
// becomes visible again, refresh them at once instead of waiting for the next tick.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible" || !window.htmx) return;
  document.querySelectorAll("[hx-trigger*='visibilityState']").forEach((el) => {
    window.htmx.trigger(el, "refresh-now");
  });
});

// Buttons marked data-confirm ask before they submit.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});
