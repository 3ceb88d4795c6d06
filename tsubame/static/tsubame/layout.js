// Layout for narrow screens: the main menu collapses behind a button, and tables marked
// `cards` show one card per row.
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

  // On narrow screens the CSS shows a `.table-wrap.cards` table as one card per row; each
  // cell is labelled with its column's header, so that no template repeats them per cell.
  for (const table of document.querySelectorAll(".table-wrap.cards table")) {
    const headers = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.cells].forEach((cell, index) => {
        if (headers[index] && cell.colSpan === 1) cell.dataset.label = headers[index];
      });
    }
  }
})();
