// Layout for narrow screens: the main menu collapses behind a button, and tables become
// one card per row whose cells are labelled with their column's header.
(function () {
  "use strict";
  const topbar = document.querySelector(".topbar");
  const toggle = topbar && topbar.querySelector(".navtoggle");
  const nav = toggle && document.getElementById(toggle.getAttribute("aria-controls"));
  if (nav) {
    const setOpen = (open) => {
      toggle.setAttribute("aria-expanded", String(open));
      topbar.classList.toggle("nav-open", open);
    };
    toggle.hidden = false;
    topbar.dataset.collapsible = "";
    toggle.addEventListener("click", () => setOpen(!topbar.classList.contains("nav-open")));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && topbar.classList.contains("nav-open")) {
        setOpen(false);
        toggle.focus();
      }
    });
    document.addEventListener("click", (event) => {
      if (!topbar.contains(event.target)) setOpen(false);
    });
  }

  // The CSS turns a labelled table into cards only on narrow screens; the labels come from
  // the header so that no template has to repeat them per cell.
  const label = (wrap) => {
    const table = wrap.querySelector("table");
    const headers = table ? [...table.querySelectorAll("thead th")] : [];
    if (!headers.length) return;
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.cells].forEach((cell, index) => {
        const text = headers[index] && headers[index].textContent.trim();
        if (text && cell.colSpan === 1) cell.dataset.label = text;
      });
    }
    wrap.dataset.reflow = "";
  };
  const labelAll = () => document.querySelectorAll(".table-wrap").forEach(label);
  labelAll();
  // Rows arrive later too: htmx swaps in the running list, the execution page updates hosts.
  const touchesTable = (record) =>
    record.target.closest(".table-wrap") ||
    [...record.addedNodes].some((node) => node.querySelector && node.querySelector(".table-wrap"));
  const main = document.querySelector("main");
  if (main) {
    new MutationObserver((records) => {
      if (records.some(touchesTable)) labelAll();
    }).observe(main, { childList: true, subtree: true });
  }
})();
