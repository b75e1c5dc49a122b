/* API keys page: the Copy button next to a newly shown key. The Clipboard API needs a secure context (HTTPS or
   localhost); elsewhere the key is selected and copied with execCommand, or left selected for Ctrl+C. */
(function () {
  "use strict";

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copyBySelection(node) {
    selectText(node);
    try { return document.execCommand("copy"); } catch (ignored) { return false; }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) return;
    var label = button.textContent;
    function show(copied) {
      button.textContent = copied ? "Copied" : "Press Ctrl+C";
      button.setAttribute("data-copied", copied ? "1" : "0");
      window.setTimeout(function () { button.textContent = label; }, 2000);
    }
    var text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { show(true); }, function () { show(copyBySelection(source)); });
    } else {
      show(copyBySelection(source));
    }
  });
})();
