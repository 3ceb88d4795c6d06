// The server form: only the chosen authentication method's secrets are shown (the server
// ignores the others anyway), and known tags can be added to the tags field with a click.
(function () {
  "use strict";
  const method = document.getElementById("id_auth_method");
  if (method) {
    const show = () => {
      for (const group of document.querySelectorAll("fieldset[data-auth-method]")) {
        const chosen = group.dataset.authMethod === method.value;
        group.hidden = !chosen;
        group.disabled = !chosen; // nor are they sent
      }
    };
    method.addEventListener("change", show);
    show();
  }

  const input = document.getElementById("id_tags");
  const choices = document.getElementById("tag-choices");
  if (input && choices) {
    const names = () => input.value.split(/[\s,]+/).filter(Boolean);
    const mark = () => {
      const chosen = new Set(names());
      for (const button of choices.querySelectorAll("button[data-tag]")) {
        button.setAttribute("aria-pressed", String(chosen.has(button.dataset.tag)));
      }
    };
    choices.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-tag]");
      if (!button) return;
      const tag = button.dataset.tag;
      const current = names();
      const next = current.includes(tag) ? current.filter((n) => n !== tag) : [...current, tag];
      input.value = next.join(", ");
      mark();
    });
    input.addEventListener("input", mark);
    choices.hidden = false;
    mark();
  }
})();
