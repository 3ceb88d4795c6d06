// The job script editor: CodeMirror on the script textarea, the mode following the interpreter.
(function () {
  "use strict";
  const textarea = document.getElementById("id_script");
  const interpreter = document.getElementById("id_interpreter");
  if (!textarea || !window.CodeMirror) return;
  const modeFor = (path) => (/python/.test(path || "") ? "python" : "shell");
  const editor = CodeMirror.fromTextArea(textarea, {
    mode: modeFor(interpreter && interpreter.value),
    lineNumbers: true,
    indentUnit: 2,
    tabSize: 2,
    lineWrapping: false,
    extraKeys: { Tab: (cm) => cm.replaceSelection("  ") },
  });
  if (interpreter) {
    interpreter.addEventListener("input", () => editor.setOption("mode", modeFor(interpreter.value)));
  }
  // Keep the (hidden, required) textarea current: the browser validates it before any
  // submit handler could copy the editor's content into it.
  editor.on("change", () => editor.save());
})();
