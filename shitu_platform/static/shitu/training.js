/* Fine-tuning pages: follow running jobs through the REST API (session auth), draw the loss curve on a canvas, and
   show a banner when a job this browser is watching changes state. Markup for finished states comes from the
   server: on a state change the page's sections are replaced by their fresh render. */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var WATCH_KEY = "shitu.finetune.watching";
  var ACTIVE = ["queued", "preparing", "training", "evaluating", "reembedding"];
  var SERIES = [
    { key: "loss", label: "total", colour: "#1f6feb", width: 2.25 },
    { key: "ce", label: "cross-entropy", colour: "#d97706", width: 1.5 },
    { key: "triplet", label: "triplet", colour: "#8250df", width: 1.5 },
  ];

  var root = document.getElementById("ft-root");
  if (!root) return;
  var labelsNode = document.getElementById("ft-state-labels");
  var stateLabels = labelsNode ? JSON.parse(labelsNode.textContent) : {};

  function isActive(state) { return ACTIVE.indexOf(state) !== -1; }
  // The server's promotion rule: a ready job is worth promoting only when its held-out mAP rose (missing counts as 0).
  function stateClasses(data) {
    var before = (data.metrics_before || {}).mAP || 0, after = (data.metrics_after || {}).mAP || 0;
    return "state-" + data.state + (data.state === "ready" && !(after > before) ? " verdict-not-better" : "");
  }
  function label(state) { return stateLabels[state] || state; }
  function apiUrl(id) { return root.dataset.pollUrl.replace("{id}", id); }
  function pageUrl(id) { return root.dataset.jobUrl.replace("{id}", id); }

  function getJob(id) {
    return fetch(apiUrl(id), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 404 || response.status === 403) return { gone: true };
        return response.ok ? response.json() : Promise.reject(response.status);
      });
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
      .catch(function () { /* the next change or a reload shows the current state */ });
  }

  // --- watched jobs: {id: {state, gallery}} in localStorage, so a change is noticed on the next training page too ---

  function loadWatched() {
    try { return JSON.parse(window.localStorage.getItem(WATCH_KEY) || "{}") || {}; } catch (ignored) { return {}; }
  }
  function saveWatched(watched) {
    try { window.localStorage.setItem(WATCH_KEY, JSON.stringify(watched)); } catch (ignored) { /* private mode */ }
  }
  function setWatched(id, state, gallery) {
    var watched = loadWatched();
    if (isActive(state)) watched[id] = { state: state, gallery: gallery || (watched[id] && watched[id].gallery) || "" };
    else delete watched[id];
    saveWatched(watched);
  }

  function notify(id, gallery, from, to) {
    var area = document.getElementById("ft-notifications");
    if (!area) return;
    var banner = document.createElement("div");
    banner.className = "ft-banner state-" + to;
    banner.setAttribute("role", "status");
    banner.setAttribute("data-testid", "notification");
    var text = document.createElement("span");
    text.className = "ft-banner-text";
    var name = document.createElement("strong");
    name.textContent = "Fine-tune #" + id + (gallery ? " on “" + gallery + "”" : "");
    text.appendChild(name);
    text.appendChild(document.createTextNode(": " + label(from) + " → " + label(to) + "."));
    banner.appendChild(text);
    var onThisPage = job && String(job.id) === String(id);
    if (!onThisPage) {
      var link = document.createElement("a");
      link.href = pageUrl(id);
      link.textContent = "Open job";
      banner.appendChild(link);
    }
    var close = document.createElement("button");
    close.type = "button";
    close.className = "ft-banner-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", function () { banner.remove(); });
    banner.appendChild(close);
    area.prepend(banner);
  }

  // --- the loss curve ---

  function niceStep(range, ticks) {
    var rough = range / Math.max(1, ticks);
    var power = Math.pow(10, Math.floor(Math.log10(rough)));
    var unit = rough / power;
    return (unit < 1.5 ? 1 : unit < 3 ? 2 : unit < 7 ? 5 : 10) * power;
  }

  function formatTick(value, step) {
    var decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return value.toFixed(Math.min(decimals, 4));
  }

  function LossChart(canvas, readout) {
    this.canvas = canvas;
    this.readout = readout;
    this.history = [];
    this.hover = null;
    var chart = this;
    canvas.addEventListener("mousemove", function (event) {
      var box = canvas.getBoundingClientRect();
      chart.hover = event.clientX - box.left;
      chart.draw();
    });
    canvas.addEventListener("mouseleave", function () { chart.hover = null; chart.draw(); });
    window.addEventListener("resize", function () { chart.draw(); });
  }

  LossChart.prototype.update = function (history) {
    this.history = (history || []).filter(function (point) { return typeof point.step === "number"; });
    this.canvas.dataset.points = String(this.history.length);
    var empty = this.canvas.parentElement.querySelector(".ft-chart-empty");
    if (empty) empty.hidden = this.history.length > 0;
    this.draw();
  };

  LossChart.prototype.draw = function () {
    var canvas = this.canvas;
    var width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    var ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var history = this.history;
    var pad = { left: 58, right: 16, top: 12, bottom: 44 };
    var plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;

    var xMin = history.length ? history[0].step : 0;
    var xMax = history.length ? history[history.length - 1].step : 10;
    if (xMax <= xMin) xMax = xMin + 1;
    var yMax = 0, yMin = 0;
    history.forEach(function (point) {
      SERIES.forEach(function (series) {
        var value = point[series.key];
        if (typeof value === "number" && isFinite(value)) { yMax = Math.max(yMax, value); yMin = Math.min(yMin, value); }
      });
    });
    if (yMax <= yMin) yMax = yMin + 1;
    var yStep = niceStep(yMax - yMin, 5);
    yMax = Math.ceil(yMax / yStep) * yStep;
    yMin = Math.floor(yMin / yStep) * yStep;
    var xStep = Math.max(1, niceStep(xMax - xMin, Math.max(2, Math.floor(plotW / 90))));

    function x(step) { return pad.left + (step - xMin) / (xMax - xMin) * plotW; }
    function y(value) { return pad.top + (1 - (value - yMin) / (yMax - yMin)) * plotH; }

    // grid and tick labels
    ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.fillStyle = "#6b7385";
    ctx.strokeStyle = "#eceef2";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (var value = yMin; value <= yMax + yStep / 2; value += yStep) {
      var py = Math.round(y(value)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.left, py); ctx.lineTo(pad.left + plotW, py); ctx.stroke();
      ctx.fillText(formatTick(value, yStep), pad.left - 8, py);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (var step = Math.ceil(xMin / xStep) * xStep; step <= xMax; step += xStep) {
      var px = Math.round(x(step)) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, pad.top + plotH); ctx.lineTo(px, pad.top + plotH + 4); ctx.strokeStyle = "#c7ccd6"; ctx.stroke();
      ctx.fillText(String(Math.round(step)), px, pad.top + plotH + 7);
    }
    // axes and their titles
    ctx.strokeStyle = "#c7ccd6";
    ctx.beginPath(); ctx.moveTo(pad.left + 0.5, pad.top); ctx.lineTo(pad.left + 0.5, pad.top + plotH + 0.5);
    ctx.lineTo(pad.left + plotW, pad.top + plotH + 0.5); ctx.stroke();
    ctx.fillStyle = "#1d2330";
    ctx.fillText("training step", pad.left + plotW / 2, height - 17);
    ctx.save();
    ctx.translate(14, pad.top + plotH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText("loss", 0, 0);
    ctx.restore();

    if (!history.length) { this.readout.innerHTML = "&nbsp;"; return; }

    // one line per series; a lone point is a dot
    SERIES.slice().reverse().forEach(function (series) {
      var points = history.filter(function (point) { return typeof point[series.key] === "number" && isFinite(point[series.key]); });
      if (!points.length) return;
      ctx.strokeStyle = ctx.fillStyle = series.colour;
      ctx.lineWidth = series.width;
      ctx.lineJoin = "round";
      if (points.length === 1) {
        ctx.beginPath(); ctx.arc(x(points[0].step), y(points[0][series.key]), 3, 0, 2 * Math.PI); ctx.fill();
        return;
      }
      ctx.beginPath();
      points.forEach(function (point, index) {
        var px = x(point.step), py = y(point[series.key]);
        if (index === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      });
      ctx.stroke();
    });

    // the hovered (else the latest) step, read out below the chart
    var shown = history[history.length - 1];
    if (this.hover !== null) {
      var wanted = xMin + (this.hover - pad.left) / plotW * (xMax - xMin);
      shown = history.reduce(function (best, point) {
        return Math.abs(point.step - wanted) < Math.abs(best.step - wanted) ? point : best;
      }, history[0]);
      var hx = Math.round(x(shown.step)) + 0.5;
      ctx.strokeStyle = "rgba(29,35,48,.35)"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(hx, pad.top); ctx.lineTo(hx, pad.top + plotH); ctx.stroke();
      SERIES.forEach(function (series) {
        if (typeof shown[series.key] !== "number") return;
        ctx.fillStyle = series.colour;
        ctx.beginPath(); ctx.arc(hx, y(shown[series.key]), 3.5, 0, 2 * Math.PI); ctx.fill();
      });
    }
    var parts = [(this.hover !== null ? "step " : "latest: step ") + shown.step];
    SERIES.forEach(function (series) {
      if (typeof shown[series.key] === "number") parts.push(series.label + " " + shown[series.key].toFixed(4));
    });
    if (typeof shown.lr === "number") parts.push("learning rate " + shown.lr.toPrecision(3));
    this.readout.textContent = parts.join(" · ");
  };

  // --- job page ---

  var job = null;
  var jobNode = document.getElementById("ft-job");
  var chart = null;

  function showProgress(data) {
    var card = document.getElementById("ft-progress-card");
    if (!card) return;
    var percent = Math.round(Math.max(0, Math.min(1, data.progress || 0)) * 100);
    var bar = card.querySelector(".ft-progress");
    bar.setAttribute("aria-valuenow", String(percent));
    var fill = bar.querySelector(".ft-progress-bar");
    fill.style.width = percent + "%";
    fill.className = "ft-progress-bar " + stateClasses(data);
    card.querySelector("[data-field=percent]").textContent = percent + "%";
    if (data.total_steps) {
      card.querySelector("[data-field=steps]").textContent = " · step " + data.current_step + " of " + data.total_steps +
        " · epoch " + data.current_epoch + " of " + data.epochs;
    }
    var badge = document.querySelector("#ft-head [data-field=state]");
    if (badge) { badge.textContent = label(data.state); badge.className = "ft-badge ft-badge-large " + stateClasses(data); }
    var log = document.querySelector("#ft-log-card [data-field=log]");
    if (log && data.log && log.textContent !== data.log) {
      var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
      log.textContent = data.log;
      if (atBottom) log.scrollTop = log.scrollHeight;
    }
  }

  if (jobNode) {
    job = { id: jobNode.dataset.jobId, state: jobNode.dataset.state, gallery: jobNode.dataset.gallery };
    var canvas = document.getElementById("ft-loss-chart");
    chart = new LossChart(canvas, document.querySelector("#ft-loss-card [data-field=readout]"));
    var historyNode = document.getElementById("ft-loss-history");
    chart.update(historyNode ? JSON.parse(historyNode.textContent) : []);
    var log = document.querySelector("#ft-log-card [data-field=log]");
    if (log) log.scrollTop = log.scrollHeight;
  }

  function onJobPage(data) {
    showProgress(data);
    chart.update(data.loss_history);
    if (data.state !== job.state) {
      job.state = data.state;
      jobNode.dataset.state = data.state;
      refreshSections(["ft-head", "ft-progress-card", "ft-eval"]);
    }
  }

  // --- list page ---

  var rows = {};
  Array.prototype.forEach.call(document.querySelectorAll("[data-job-row]"), function (row) {
    rows[row.getAttribute("data-job-row")] = true;
  });

  function onListRow(id, data) {
    var row = document.querySelector("[data-job-row='" + id + "']");
    if (!row) return;
    var percent = Math.round(Math.max(0, Math.min(1, data.progress || 0)) * 100);
    var fill = row.querySelector(".ft-progress-bar");
    fill.style.width = percent + "%";
    fill.className = "ft-progress-bar " + stateClasses(data);
    row.querySelector(".ft-progress").setAttribute("aria-valuenow", String(percent));
    row.querySelector("[data-field=percent]").textContent = percent + "%";
    var badge = row.querySelector("[data-field=state]");
    badge.textContent = label(data.state);
    badge.className = "ft-badge " + stateClasses(data);
  }

  // --- one loop over every watched job ---

  function handle(id, data) {
    var watched = loadWatched();
    var before = watched[id];
    if (data.gone) { delete watched[id]; saveWatched(watched); return; }
    if (before && before.state !== data.state) notify(id, before.gallery, before.state, data.state);
    setWatched(id, data.state, before && before.gallery);
    if (job && String(job.id) === String(id)) onJobPage(data);
    if (rows[id]) {
      var row = document.querySelector("[data-job-row='" + id + "']");
      var changed = row && row.getAttribute("data-state") !== data.state;
      onListRow(id, data);
      if (changed) refreshSections(["ft-jobs", "ft-active-model", "ft-start", "ft-models"]).then(bindRows);
    }
  }

  function bindRows() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-job-row]"), function (row) {
      rows[row.getAttribute("data-job-row")] = true;
    });
  }

  var polling = false;
  function poll() {
    var ids = Object.keys(loadWatched());
    if (!ids.length) { polling = false; return; }
    polling = true;
    Promise.all(ids.map(function (id) {
      return getJob(id).then(function (data) { handle(id, data); }, function () { /* try again next round */ });
    })).then(function () { window.setTimeout(poll, POLL_MS); });
  }

  // What the server rendered is the truth now: a watched job that changed while this page was away gets its
  // banner here; a job shown active is watched from now on.
  function adopt(id, state, gallery) {
    var before = loadWatched()[id];
    if (before && before.state !== state) notify(id, before.gallery || gallery, before.state, state);
    setWatched(id, state, gallery);
  }
  if (job) adopt(job.id, job.state, job.gallery);
  Array.prototype.forEach.call(document.querySelectorAll("[data-job-row]"), function (row) {
    adopt(row.getAttribute("data-job-row"), row.getAttribute("data-state"), row.getAttribute("data-gallery"));
  });
  if (!polling) window.setTimeout(poll, POLL_MS);

  // A promotion or cancel reloads the page, and a job that becomes active again is watched again.
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });
})();
