// The job editor's parameters (jobs/job_form.html): a row per parameter instead of the JSON
// they are stored as. Every change writes the JSON back into the form's (hidden) textarea,
// so the server's form stays the one judge of the definitions; its errors, which name the
// parameter ("Parameter VERSION: ..."), are shown at that parameter's row. Without this
// script the JSON is edited as it is.
(function () {
  "use strict";
  const editor = document.querySelector(".parameter-editor");
  const configScript = document.getElementById("parameter-editor-config");
  if (!editor || !configScript) return;
  const textarea = document.getElementById(editor.dataset.json);
  const fieldset = editor.closest("fieldset");
  // {types: [...], applies: {key: [types it applies to]}}, from the server's own constants.
  const config = JSON.parse(configScript.textContent);

  let definitions;
  try {
    definitions = JSON.parse(textarea.value.trim() || "[]");
  } catch (error) {
    return; // JSON typed without this script that does not parse: left for the server to explain
  }
  const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
  if (!Array.isArray(definitions) || !definitions.every(isObject)) return;

  const rows = editor.querySelector(".parameter-rows");
  const noRows = editor.querySelector(".parameter-rows-none");
  const applies = (key, type) => config.applies[key].includes(type);
  // How a type's default is typed; any other type's is one line of text.
  const DEFAULT_INPUTS = {
    text: "lines", multichoice: "lines", integer: "number", number: "number",
    boolean: "select", choice: "select",
  };
  let serial = 0; // for the inputs' ids

  const lines = (text) => text.split("\n").map((line) => line.trim()).filter(Boolean);
  // A number when the text reads as one; otherwise the text, which the server refuses.
  const number = (text) => (text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text);
  const shown = (value) => {
    if (value === null || value === undefined) return "";
    return Array.isArray(value) ? value.join("\n") : String(value);
  };

  function control(tag, type) {
    const node = document.createElement(tag);
    if (type) node.type = type;
    if (type === "number") node.step = "any";
    if (tag === "textarea") node.rows = 2;
    node.spellcheck = false;
    node.autocomplete = "off";
    return node;
  }

  // One labelled input of a row, editing the definition's `key`.
  function field(key, text, widget, hint) {
    serial += 1;
    widget.id = `parameter-input-${serial}`;
    widget.dataset.key = key;
    const label = document.createElement("label");
    label.htmlFor = widget.id;
    label.textContent = text;
    const wrap = document.createElement("div");
    wrap.className = `parameter-field field-${key}`;
    wrap.dataset.field = key;
    wrap.append(label, widget);
    if (hint) {
      const help = document.createElement("span");
      help.className = "helptext";
      help.id = `${widget.id}-help`;
      help.textContent = hint;
      widget.setAttribute("aria-describedby", help.id);
      wrap.append(help);
    }
    return wrap;
  }

  function defaultInput(type, choices) {
    const kind = DEFAULT_INPUTS[type];
    if (kind === "select") {
      const select = control("select");
      const options = type === "boolean" ? ["true", "false"] : choices;
      select.append(new Option("(none)", ""), ...options.map((choice) => new Option(choice, choice)));
      return select;
    }
    if (kind === "lines") return control("textarea");
    return control("input", kind === "number" ? "number" : "text");
  }

  function readDefault(type, input) {
    const text = input.value;
    if (text === "") return null;
    if (type === "boolean") return text === "true";
    if (DEFAULT_INPUTS[type] === "number") return number(text);
    if (type === "multichoice") return lines(text).length ? lines(text) : null;
    return text;
  }

  const input = (row, key) => row.querySelector(`[data-key="${key}"]`);

  // Shows the row's inputs for `type`, and a default input of its kind (keeping the value).
  function setType(row, type, value) {
    row.dataset.type = type;
    const old = input(row, "default");
    const fresh = defaultInput(type, lines(input(row, "choices").value));
    fresh.id = old.id;
    fresh.dataset.key = "default";
    fresh.value = shown(value);
    if (fresh.value !== shown(value)) fresh.value = ""; // not one of the choices
    old.replaceWith(fresh);
    for (const part of row.querySelectorAll("[data-field]")) {
      const key = part.dataset.field;
      part.hidden = key in config.applies && !applies(key, type);
    }
  }

  function tool(action, text) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn small";
    button.dataset.action = action;
    button.textContent = text;
    return button;
  }

  function addRow(definition) {
    const row = document.createElement("li");
    row.className = "parameter-row";
    const head = document.createElement("div");
    head.className = "parameter-head";
    const title = document.createElement("strong");
    title.className = "parameter-title";
    const tools = document.createElement("span");
    tools.className = "parameter-tools";
    tools.append(tool("up", "↑"), tool("down", "↓"), tool("remove", "Remove"));
    head.append(title, tools);
    const errors = document.createElement("ul");
    errors.className = "errorlist";
    errors.hidden = true;

    const name = control("input", "text");
    name.className = "mono";
    name.placeholder = "APP_VERSION";
    const type = control("select");
    type.append(...config.types.map((kind) => new Option(kind, kind)));
    const required = control("input", "checkbox");
    const requiredField = field("required", "Required", required);
    requiredField.classList.add("check");
    requiredField.append(requiredField.querySelector("label")); // the box, then its label
    const maxLength = control("input", "number");
    maxLength.step = "1";
    const grid = document.createElement("div");
    grid.className = "parameter-grid";
    grid.append(
      field("name", "Name", name, "The script's environment variable."),
      field("label", "Label", control("input", "text"), "Shown instead of the name."),
      field("type", "Type", type),
      requiredField,
      field("choices", "Choices", control("textarea"), "One per line."),
      field("default", "Default", control("input", "text")),
      field("pattern", "Pattern", control("input", "text"), "A regular expression the whole value matches."),
      field("max_length", "Max length", maxLength),
      field("min", "Min", control("input", "number")),
      field("max", "Max", control("input", "number")),
      field("help", "Help", control("input", "text"), "Shown under the input when running."),
    );
    input(grid, "pattern").classList.add("mono");
    row.append(head, errors, grid);
    rows.append(row);

    name.value = shown(definition.name);
    input(row, "label").value = shown(definition.label);
    input(row, "choices").value = shown(definition.choices);
    input(row, "pattern").value = shown(definition.pattern);
    for (const key of ["min", "max", "max_length"]) input(row, key).value = shown(definition[key]);
    input(row, "help").value = shown(definition.help);
    required.checked = definition.required === true;
    const kind = config.types.includes(definition.type) ? definition.type : config.types[0];
    type.value = kind;
    setType(row, kind, definition.default);
    return row;
  }

  function definitionOf(row) {
    const type = row.dataset.type;
    const text = (key) => input(row, key).value;
    const definition = { name: text("name").trim() };
    if (text("label").trim()) definition.label = text("label");
    definition.type = type;
    if (input(row, "required").checked) definition.required = true;
    if (applies("default", type)) {
      const value = readDefault(type, input(row, "default"));
      if (value !== null) definition.default = value;
    }
    if (applies("choices", type) && lines(text("choices")).length) definition.choices = lines(text("choices"));
    if (applies("pattern", type) && text("pattern")) definition.pattern = text("pattern");
    for (const key of ["min", "max", "max_length"]) {
      if (applies(key, type) && text(key).trim() !== "") definition[key] = number(text(key));
    }
    if (text("help").trim()) definition.help = text("help");
    return definition;
  }

  // The rows' titles and buttons, after any change of names or order.
  function label() {
    const all = [...rows.children];
    all.forEach((row, index) => {
      const name = input(row, "name").value.trim();
      const called = name || `parameter ${index + 1}`;
      row.querySelector(".parameter-title").textContent = `${index + 1}. ${name || "(no name yet)"}`;
      const [up, down, remove] = row.querySelectorAll(".parameter-tools button");
      up.disabled = index === 0;
      down.disabled = index === all.length - 1;
      up.setAttribute("aria-label", `Move ${called} up`);
      down.setAttribute("aria-label", `Move ${called} down`);
      remove.setAttribute("aria-label", `Remove ${called}`);
    });
    noRows.hidden = all.length > 0;
  }

  function write() {
    textarea.value = JSON.stringify([...rows.children].map(definitionOf));
    label();
  }

  // The server's messages that name a parameter go to its row (by name, or by position
  // when it has no valid name yet); any other stays above the rows.
  function placeErrors() {
    const list = fieldset.querySelector(".parameter-errors .errorlist");
    if (!list) return;
    const all = [...rows.children];
    for (const item of [...list.children]) {
      const match = /^Parameter (\S+): ([\s\S]*)$/.exec(item.textContent);
      if (!match) continue;
      const [, which, message] = match;
      const row =
        all.find((candidate) => input(candidate, "name").value.trim() === which) ||
        (/^\d+$/.test(which) ? all[Number(which) - 1] : undefined);
      if (!row) continue;
      const errors = row.querySelector(".errorlist");
      const entry = document.createElement("li");
      entry.textContent = message;
      errors.append(entry);
      errors.hidden = false;
      row.classList.add("invalid");
      item.remove();
    }
    if (!list.children.length) list.remove();
  }

  editor.addEventListener("change", (event) => {
    const key = event.target.dataset.key;
    const row = event.target.closest(".parameter-row");
    if (key === "type") setType(row, event.target.value, readDefault(row.dataset.type, input(row, "default")));
    write();
  });
  editor.addEventListener("input", (event) => {
    const row = event.target.closest(".parameter-row");
    if (event.target.dataset.key === "choices" && row.dataset.type === "choice") {
      setType(row, "choice", readDefault("choice", input(row, "default")));
    }
    write();
  });
  editor.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.hasAttribute("data-add")) {
      const row = addRow({ type: "string" });
      write();
      input(row, "name").focus();
      return;
    }
    const row = button.closest(".parameter-row");
    if (!row) return;
    if (button.dataset.action === "up" && row.previousElementSibling) {
      rows.insertBefore(row, row.previousElementSibling);
    } else if (button.dataset.action === "down" && row.nextElementSibling) {
      rows.insertBefore(row.nextElementSibling, row);
    } else if (button.dataset.action === "remove") {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      write();
      (next ? input(next, "name") : editor.querySelector("[data-add]")).focus();
      return;
    }
    write();
    // Moved to an end, its button is disabled: the other one keeps the focus on the row.
    if (button.disabled) row.querySelector(`[data-action="${button.dataset.action === "up" ? "down" : "up"}"]`).focus();
    else button.focus();
  });

  definitions.forEach(addRow);
  label();
  placeErrors();
  fieldset.querySelector(".parameters-json").hidden = true;
  editor.hidden = false;
})();
