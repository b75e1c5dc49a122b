/* Product page: draw or correct the product box of a reference image. "Edit box" on a card opens the editor;
   dragging draws a box in the original image's pixels; saving posts it (session + CSRF) and reloads the page,
   which follows the re-embedding until the card shows the new box. Clicks are caught on the document, because
   galleries.js replaces the image grid while it polls. */
(function () {
  "use strict";

  var MIN_SIDE = 8; // pixels of the original image; the server refuses smaller boxes too

  var dialog = document.getElementById("box-editor");
  if (!dialog) return;
  var stage = dialog.querySelector(".box-editor-stage");
  var picture = stage.querySelector("img");
  var drawn = stage.querySelector("[data-testid=box-drawn]");
  var coords = dialog.querySelector("[data-field=coords]");
  var errorLine = dialog.querySelector(".field-error");
  var saveButton = dialog.querySelector("[data-action=save]");

  var image = null; // {url, width, height} of the image being edited
  var box = null; // [xmin, ymin, xmax, ymax] in image pixels; null is the whole image
  var anchor = null; // where the current drag started, in image pixels

  function csrfToken() {
    var input = dialog.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = !text;
  }

  function render() {
    drawn.hidden = box === null;
    if (box) {
      drawn.style.left = (box[0] / image.width * 100) + "%";
      drawn.style.top = (box[1] / image.height * 100) + "%";
      drawn.style.width = ((box[2] - box[0]) / image.width * 100) + "%";
      drawn.style.height = ((box[3] - box[1]) / image.height * 100) + "%";
      coords.textContent = box[0] + "," + box[1] + " – " + box[2] + "," + box[3] + " px (" +
        (box[2] - box[0]) + " × " + (box[3] - box[1]) + ")";
    } else {
      coords.textContent = "Whole image, " + image.width + " × " + image.height + " px";
    }
  }

  // A pointer position as whole pixels of the original image, kept inside it.
  function toImage(event) {
    var rect = stage.getBoundingClientRect();
    var x = Math.min(Math.max((event.clientX - rect.left) / rect.width, 0), 1);
    var y = Math.min(Math.max((event.clientY - rect.top) / rect.height, 0), 1);
    return [Math.round(x * image.width), Math.round(y * image.height)];
  }

  function open(button) {
    image = { url: button.dataset.boxUrl, width: Number(button.dataset.width), height: Number(button.dataset.height) };
    box = button.dataset.box ? button.dataset.box.split(",").map(Number) : null;
    stage.style.setProperty("--w", image.width);
    stage.style.setProperty("--h", image.height);
    picture.src = button.dataset.previewUrl;
    showError("");
    saveButton.disabled = false;
    render();
    dialog.showModal();
  }

  function save(value) {
    var data = new FormData();
    data.append("bbox", value ? JSON.stringify(value) : "");
    saveButton.disabled = true;
    fetch(image.url, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (response.ok) { window.location.reload(); return; }
        var error = body && body.error;
        showError(error ? error.code + ": " + error.message : "http_" + response.status + ": the box was not saved");
        saveButton.disabled = false;
      });
    }, function () {
      showError("network_error: the server could not be reached");
      saveButton.disabled = false;
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-box-edit]");
    if (button) open(button);
  });

  stage.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) return;
    event.preventDefault();
    stage.setPointerCapture(event.pointerId);
    anchor = toImage(event);
  });
  stage.addEventListener("pointermove", function (event) {
    if (!anchor) return;
    var point = toImage(event);
    box = [Math.min(anchor[0], point[0]), Math.min(anchor[1], point[1]), Math.max(anchor[0], point[0]), Math.max(anchor[1], point[1])];
    render();
  });
  function endDrag() {
    if (!anchor) return;
    anchor = null;
    var small = box && (box[2] - box[0] < MIN_SIDE || box[3] - box[1] < MIN_SIDE);
    showError(small ? "The box is smaller than " + MIN_SIDE + " × " + MIN_SIDE + " px: drag a larger one." : "");
    saveButton.disabled = Boolean(small);
  }
  stage.addEventListener("pointerup", endDrag);
  stage.addEventListener("pointercancel", endDrag);

  saveButton.addEventListener("click", function () { save(box); });
  dialog.querySelector("[data-action=whole]").addEventListener("click", function () { save(null); });
  dialog.querySelector("[data-action=cancel]").addEventListener("click", function () { dialog.close(); });
})();
