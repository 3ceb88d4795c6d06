// The target picker (servers/target_picker.html): filter the servers, select all shown or
// none, or every server carrying a tag. Without this script it is a plain checkbox list.
(function () {
  "use strict";
  const words = (text) => text.toLowerCase().split(/\s+/).filter(Boolean);

  function setUp(picker) {
    const tools = picker.querySelector(".picker-tools");
    const filter = picker.querySelector(".picker-filter");
    const count = picker.querySelector(".picker-count");
    const none = picker.querySelector(".picker-none");
    const rows = [...picker.querySelectorAll(".picker-list li[data-tags]")];
    const box = (row) => row.querySelector("input[type=checkbox]");
    const teamSelect = picker.dataset.teamSelect && document.getElementById(picker.dataset.teamSelect);
    // Servers of another team than the chosen one are not offered (the form refuses them).
    const ofTeam = (row) => !teamSelect || !teamSelect.value || row.dataset.team === teamSelect.value;

    const update = () => {
      const wanted = words(filter.value);
      let shown = 0;
      for (const row of rows) {
        const text = row.textContent.toLowerCase();
        const visible = ofTeam(row) && wanted.every((word) => text.includes(word));
        row.hidden = !visible;
        if (visible) shown += 1;
      }
      none.hidden = shown > 0 || rows.length === 0;
      const selected = rows.filter((row) => box(row).checked).length;
      count.textContent = `${selected} of ${rows.filter(ofTeam).length} selected`;
    };

    const tagButtons = picker.querySelector(".picker-tags");
    const tags = [...new Set(rows.flatMap((row) => words(row.dataset.tags)))].sort();
    if (tags.length) tagButtons.append("Select tag: ");
    for (const tag of tags) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "tag";
      button.dataset.tag = tag;
      button.textContent = tag;
      tagButtons.append(button, " ");
    }

    tools.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      for (const row of rows) {
        if (button.dataset.pick === "shown" && !row.hidden) box(row).checked = true;
        if (button.dataset.pick === "none") box(row).checked = false;
        if (button.dataset.tag && ofTeam(row) && words(row.dataset.tags).includes(button.dataset.tag)) {
          box(row).checked = true;
        }
      }
      update();
    });
    filter.addEventListener("input", update);
    // Enter in the filter would submit the form with a half-made selection.
    filter.addEventListener("keydown", (event) => {
      if (event.key === "Enter") event.preventDefault();
    });
    picker.addEventListener("change", update);
    if (teamSelect) {
      teamSelect.addEventListener("change", () => {
        for (const row of rows) if (!ofTeam(row)) box(row).checked = false;
        update();
      });
    }
    tools.hidden = false;
    update();
  }

  document.querySelectorAll(".target-picker").forEach(setUp);
})();
