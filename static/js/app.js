// Small page behaviours shared by every page; htmx does the rest. No inline script or
// handler anywhere (the Content-Security-Policy forbids them), and no htmx trigger
// filters (htmx would eval them): what a page needs is wired here by data attributes.
"use strict";

// Polling panels: `hx-trigger="poll, refresh-now" data-poll="5"` refreshes every 5 s
// while the tab is visible, and at once when it becomes visible again. One ticker for
// the page; a panel swapped in by htmx starts its own period.
const lastPoll = new WeakMap();
window.setInterval(() => {
  if (document.visibilityState !== "visible" || !window.htmx) return;
  const now = Date.now();
  document.querySelectorAll("[data-poll]").forEach((el) => {
    const every = Number(el.dataset.poll) * 1000;
    if (!(every > 0)) return;
    const last = lastPoll.get(el);
    if (last === undefined) {
      lastPoll.set(el, now);
    } else if (now - last >= every) {
      lastPoll.set(el, now);
      window.htmx.trigger(el, "poll");
    }
  });
}, 1000);

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible" || !window.htmx) return;
  document.querySelectorAll("[data-poll]").forEach((el) => {
    lastPoll.set(el, Date.now());
    window.htmx.trigger(el, "refresh-now");
  });
});

// Buttons marked data-confirm ask before they submit.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});

document.addEventListener("change", (event) => {
  const target = event.target;
  // Filters that apply on change (`data-autosubmit` on a select).
  if (target.matches("[data-autosubmit]") && target.form) target.form.requestSubmit();
  // A header checkbox (`data-check-all`) checks every box of its table.
  if (target.matches("[data-check-all]")) {
    target.closest("table").querySelectorAll("tbody input[type=checkbox]").forEach((box) => {
      box.checked = target.checked;
    });
  }
  // Users list: selected rows travel as ONE field ("1,2,3"); "all matching" sends the filter.
  if (target.id === "select-page") {
    document.querySelectorAll(".row-select").forEach((box) => { box.checked = target.checked; });
  }
  if (target.matches(".row-select, #select-page")) {
    const n = document.querySelectorAll(".row-select:checked").length;
    const label = document.getElementById("selected-count");
    if (label) label.textContent = `${n} selected on this page`;
  }
});

document.addEventListener("submit", (event) => {
  if (event.target.id !== "bulk") return;
  const ids = [...document.querySelectorAll(".row-select:checked")].map((box) => box.value);
  const field = document.getElementById("bulk-ids");
  if (field) field.value = ids.join(",");
});
