/* Gallery pages: zip imports and image uploads straight to the REST API (session + CSRF), progress polling,
   and refreshing parts of the page from the server's own HTML so the markup lives in one place (the templates). */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var PENDING_POLL_MS = 2000;
  var PENDING_POLL_LIMIT = 90; // about three minutes; after that the page says to reload
  var MAX_ERRORS_SHOWN = 100;

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // Sends a form with XHR (fetch cannot report upload progress); resolves to {status, body} with body parsed JSON or null.
  function send(method, url, formData, onUploadProgress) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("Accept", "application/json");
      if (method !== "GET") xhr.setRequestHeader("X-CSRFToken", csrfToken());
      if (onUploadProgress) {
        xhr.upload.onprogress = function (event) {
          if (event.lengthComputable) onUploadProgress(event.loaded / event.total);
        };
      }
      xhr.onload = function () {
        var body = null;
        try { body = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch (ignored) { body = null; }
        resolve({ status: xhr.status, body: body });
      };
      xhr.onerror = function () { resolve({ status: 0, body: null }); };
      xhr.send(formData || null);
    });
  }

  function isOk(result) { return result.status >= 200 && result.status < 300; }

  // "code: message (field: detail)" from the API's {"error": {"code", "message", "details"}}.
  function errorText(result) {
    var error = result.body && result.body.error;
    if (error) {
      var text = error.code + ": " + error.message;
      var details = error.details;
      if (details && typeof details === "object" && !Array.isArray(details)) {
        Object.keys(details).forEach(function (key) {
          if (key === "bytes" || key === "max_bytes" || key === "width" || key === "height") return;
          text += " (" + key + ": " + [].concat(details[key]).join(" ") + ")";
        });
      }
      return text;
    }
    if (result.status === 0) return "network_error: the server could not be reached";
    if (result.status === 413) return "file_too_large: the server refused a request this big";
    if (result.status === 403) return "permission_denied: your role cannot do this";
    return "http_" + result.status + ": unexpected answer from the server";
  }

  // Replaces the elements with these ids by their fresh versions from a new render of this page.
  function refreshSections(ids) {
    return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ids.forEach(function (id) {
          var replacement = fresh.getElementById(id);
          var current = document.getElementById(id);
          if (replacement && current) current.replaceWith(document.importNode(replacement, true));
        });
      })
      .catch(function () { /* the next refresh or a reload shows the current state */ });
  }

  function bindDropzone(zone, onFiles) {
    var input = zone.querySelector("input[type=file]");
    input.addEventListener("change", function () {
      var files = Array.prototype.slice.call(input.files || []);
      input.value = ""; // choosing the same file again still fires "change"
      if (files.length && !zone.classList.contains("busy")) onFiles(files);
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      var files = Array.prototype.slice.call((event.dataTransfer && event.dataTransfer.files) || []);
      if (files.length && !zone.classList.contains("busy")) onFiles(files);
    });
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- gallery page: import a zip, follow the job ---

  function setupImport(panel) {
    var zone = panel.querySelector("[data-dropzone]");
    var box = panel.querySelector(".import-progress");
    var nameField = box.querySelector("[data-field=name]");
    var statusField = box.querySelector("[data-field=status]");
    var bar = box.querySelector(".progress");
    var fill = box.querySelector(".progress-bar");
    var counts = box.querySelector(".progress-counts");
    var errorsBox = box.querySelector(".import-errors");
    var errorsList = errorsBox.querySelector("ul");
    var pollUrl = panel.dataset.pollUrl;

    function show(name, status, label, fraction) {
      box.hidden = false;
      nameField.textContent = name;
      statusField.textContent = label;
      statusField.className = "badge status-" + status;
      var percent = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
      fill.style.width = percent + "%";
      fill.className = "progress-bar status-" + status;
      bar.setAttribute("aria-valuenow", String(percent));
    }

    function showErrors(job) {
      errorsList.textContent = "";
      var rowErrors = job.row_errors || [];
      rowErrors.slice(0, MAX_ERRORS_SHOWN).forEach(function (rowError) {
        var item = element("li");
        var where = [rowError.row ? "line " + rowError.row : "", rowError.path || ""].filter(Boolean).join(" · ");
        if (where) item.appendChild(element("span", "muted", where + " · "));
        item.appendChild(element("code", "", rowError.code));
        item.appendChild(document.createTextNode(" " + rowError.message));
        errorsList.appendChild(item);
      });
      if (rowErrors.length > MAX_ERRORS_SHOWN) {
        errorsList.appendChild(element("li", "muted", "…and " + (rowErrors.length - MAX_ERRORS_SHOWN) + " more"));
      }
      errorsBox.hidden = rowErrors.length === 0;
    }

    function follow(jobId, name) {
      zone.classList.add("busy");
      var misses = 0;
      function tick() {
        send("GET", pollUrl.replace("{id}", jobId)).then(function (result) {
          if (!isOk(result) || !result.body) {
            misses += 1;
            counts.textContent = "Cannot read the import's progress (" + errorText(result) + "); retrying…";
            if (misses < 30) window.setTimeout(tick, POLL_MS * 2);
            else zone.classList.remove("busy");
            return;
          }
          misses = 0;
          var job = result.body;
          var finished = job.status === "done" || job.status === "failed";
          show(job.archive_name || name, job.status, job.status === "done" ? "done" : job.status, job.progress);
          if (job.status === "queued") {
            counts.textContent = "Waiting for a worker…";
          } else {
            // rows done "n of N" first: it moves per row on a small import (galleries/imports.py, _batch_size)
            var rows = job.total_rows ? job.next_row + " of " + job.total_rows + " rows · " : "Reading the archive… · ";
            counts.textContent = rows + job.imported + " imported · " + job.skipped + " skipped · " + job.failed + " failed";
            if (job.total_rows) bar.setAttribute("aria-valuetext", job.next_row + " of " + job.total_rows + " rows");
          }
          if (job.failure_reason) counts.appendChild(element("div", "field-error", job.failure_reason));
          if (!finished) { window.setTimeout(tick, POLL_MS); return; }
          showErrors(job);
          zone.classList.remove("busy");
          refreshSections(["gallery-stats", "products", "recent-imports"]);
        });
      }
      tick();
    }

    bindDropzone(zone, function (files) {
      var file = files[0];
      var data = new FormData();
      data.append("archive", file, file.name);
      zone.classList.add("busy");
      errorsBox.hidden = true;
      counts.textContent = "";
      show(file.name, "uploading", "uploading", 0);
      send("POST", panel.dataset.importUrl, data, function (fraction) {
        show(file.name, "uploading", "uploading " + Math.round(fraction * 100) + "%", fraction);
      }).then(function (result) {
        if (!isOk(result) || !result.body) {
          zone.classList.remove("busy");
          show(file.name, "failed", "refused", 1);
          counts.textContent = "";
          counts.appendChild(element("div", "field-error", errorText(result)));
          return;
        }
        show(file.name, result.body.status, result.body.status, 0);
        refreshSections(["recent-imports"]);
        follow(result.body.id, file.name);
      });
    });

    // A job still running when the page was (re)loaded: follow it.
    var active = document.querySelector("[data-active-import]");
    if (active) follow(active.getAttribute("data-active-import"), active.cells[0].textContent);
  }

  // --- product page: upload images, watch pending ones become ready ---

  var pendingPolls = 0;

  function watchPending() {
    var images = document.getElementById("images");
    if (!images || images.dataset.pending === "0" || pendingPolls >= PENDING_POLL_LIMIT) return;
    pendingPolls += 1;
    window.setTimeout(function () {
      refreshSections(["product-summary", "images"]).then(watchPending);
    }, PENDING_POLL_MS);
  }

  function setupUpload(panel) {
    var zone = panel.querySelector("[data-dropzone]");
    var results = panel.querySelector(".upload-results");

    function uploadOne(file) {
      var item = element("li", "upload-result working");
      item.appendChild(element("span", "file-name", file.name));
      var outcome = element("span", "outcome", "uploading…");
      item.appendChild(outcome);
      results.prepend(item);
      var data = new FormData();
      data.append("image", file, file.name);
      return send("POST", panel.dataset.uploadUrl, data).then(function (result) {
        var stored = isOk(result) && Array.isArray(result.body) ? result.body[0] : null;
        if (stored) {
          item.className = "upload-result " + (stored.created ? "ok" : "skip");
          outcome.textContent = stored.created
            ? "uploaded, " + stored.width + "×" + stored.height + " px"
            : "already in this gallery (same bytes), not added again";
        } else {
          item.className = "upload-result bad";
          outcome.textContent = errorText(result);
        }
        return Boolean(stored && stored.created);
      });
    }

    bindDropzone(zone, function (files) {
      zone.classList.add("busy");
      var added = 0;
      // One file per request, one at a time: each gets its own result, and a bad file does not sink the others.
      files.reduce(function (chain, file) {
        return chain.then(function () { return uploadOne(file).then(function (created) { if (created) added += 1; }); });
      }, Promise.resolve()).then(function () {
        zone.classList.remove("busy");
        return refreshSections(["product-summary", "images"]);
      }).then(function () {
        if (added) { pendingPolls = 0; watchPending(); }
      });
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });
  // A file dropped next to a drop zone must not navigate away from the page.
  ["dragover", "drop"].forEach(function (name) {
    window.addEventListener(name, function (event) {
      if (!event.target.closest || !event.target.closest("[data-dropzone]")) event.preventDefault();
    });
  });

  var importPanel = document.getElementById("import-panel");
  if (importPanel) setupImport(importPanel);
  var uploadPanel = document.getElementById("upload-panel");
  if (uploadPanel) setupUpload(uploadPanel);
  watchPending();
})();
