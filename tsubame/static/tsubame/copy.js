// Copy buttons: <button data-copy="ID"> copies the text of the element with that id.
(function () {
  "use strict";
  // navigator.clipboard exists only on https:// and localhost; a server reached over plain
  // http on the LAN gets the older selection-and-copy way.
  function copySelected(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    const copied = document.execCommand("copy");
    selection.removeAllRanges();
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => {
      const source = document.getElementById(button.dataset.copy);
      const text = source.textContent.trim();
      const copying = navigator.clipboard
        ? navigator.clipboard.writeText(text).catch(() => copySelected(source))
        : copySelected(source);
      copying.then(
        () => { button.textContent = "Copied"; },
        () => { button.textContent = "Select and copy it by hand"; },
      );
    });
  }
})();
