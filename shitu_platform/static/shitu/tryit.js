/* Recognition pages: Try-it (post a photo to the API, draw the answer), feedback on objects (Try-it and a
   recognition's page), and the review queue's "select all". The markup matches templates/recognition/_*.html. */
(() => {
  "use strict";

  const BOX_COLOURS = 8; // recognition.css: .obj-c0 … .obj-c7
  const POLL_SECONDS = 60;
  const PRODUCT_PAGES = 10; // products listed for "Wrong…": at most 10 pages of 200
  const urls = JSON.parse(document.getElementById("rec-urls")?.textContent || "{}");

  // Readable wording for the API's error codes; the server's own message is shown beneath.
  const FRIENDLY = {
    truncated_image: "The file is cut off: it did not finish downloading or copying. Save or export it again and retry.",
    not_an_image: "That file is not a picture.",
    empty_image: "That file is empty.",
    unsupported_image_format: "That picture format is not supported: use JPEG, PNG, WebP, BMP, GIF or TIFF.",
    image_too_large: "The picture has too many pixels.",
    file_too_large: "The file is too big.",
    image_too_small: "The picture is too small to recognise anything in it.",
    no_gallery: "There is no gallery to search yet.",
    rate_limited: "Too many recognitions in a short time: wait a moment and try again.",
    quota_exceeded: "Your plan's quota is used up.",
    permission_denied: "Your role does not allow this.",
    not_authenticated: "Your session has ended: log in again.",
    invalid_request: "Some settings are not valid.",
    invalid_feedback: "That feedback was not accepted.",
    service_unavailable: "The service is busy or restarting: try again in a moment.",
    model_not_found: "No recognition model is installed yet.",
    timeout: "No answer from the recognition worker in time.",
  };

  // --- small helpers -------------------------------------------------------------------------
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
  const fill = (pattern, values) => pattern.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(values[name]));
  const fixed = (value, digits = 3) => (typeof value === "number" ? value.toFixed(digits) : "–");
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Build an element; text goes in as text nodes (labels are free text from users). */
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function csrfToken() {
    const field = $("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  /** fetch that always resolves to {status, body}; body is the parsed JSON or null. */
  async function api(url, options = {}) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    if (options.method && options.method !== "GET") headers["X-CSRFToken"] = csrfToken();
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", ...options, headers });
    } catch (error) {
      return { status: 0, body: null };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    return { status: response.status, body };
  }

  /** {title, message, code} for a failed call, whatever came back. */
  function describeError(status, body) {
    const error = body && body.error;
    if (error && error.code) {
      let message = error.message || "";
      if (error.details && typeof error.details === "object" && !Array.isArray(error.details)) {
        const fields = Object.entries(error.details).map(([name, value]) => `${name}: ${[].concat(value).join(" ")}`);
        if (fields.length && error.code === "invalid_request") message = fields.join("; ");
      }
      return { title: FRIENDLY[error.code] || "The request was refused.", message, code: error.code };
    }
    if (status === 0) return { title: "The server could not be reached.", message: "Check the connection and try again.", code: "network" };
    if (status === 413) return { title: FRIENDLY.file_too_large, message: `HTTP ${status}`, code: "file_too_large" };
    return { title: "Something went wrong on the server.", message: `HTTP ${status}`, code: `http_${status}` };
  }

  function renderError(box, { title, message, code }) {
    box.replaceChildren(
      el("strong", { text: title }), " ", code ? el("code", { text: code }) : null,
      message && message !== title ? el("p", { text: message }) : null,
    );
    box.hidden = false;
  }

  // --- drawing an answer (the same markup the server renders) --------------------------------
  function boxPlacement(bbox, width, height) {
    const [xmin, ymin, xmax, ymax] = bbox.map(Number);
    const w = Math.max(width, 1), h = Math.max(height, 1);
    const left = Math.max(0, (xmin / w) * 100), top = Math.max(0, (ymin / h) * 100);
    const right = Math.min(100, (xmax / w) * 100), bottom = Math.min(100, (ymax / h) * 100);
    return {
      style: `left:${left.toFixed(3)}%;top:${top.toFixed(3)}%;width:${Math.max(right - left, 0.5).toFixed(3)}%;height:${Math.max(bottom - top, 0.5).toFixed(3)}%`,
      tagInside: top < 7,
    };
  }

  function drawStage(recognition) {
    const stage = el("div", { class: "rec-stage", style: `--w:${recognition.image_width};--h:${recognition.image_height}`, "data-testid": "stage" },
      el("img", { class: "rec-photo", src: fill(urls.image, { id: recognition.id }), width: recognition.image_width,
                  height: recognition.image_height, alt: "Query photo" }));
    recognition.objects.forEach((object, index) => {
      const { style, tagInside } = boxPlacement(object.bbox, recognition.image_width, recognition.image_height);
      const classes = ["rec-box", `obj-c${index % BOX_COLOURS}`, object.whole_image && "whole", (tagInside || object.whole_image) && "tag-inside"];
      stage.append(el("div", { class: classes.filter(Boolean).join(" "), style, "data-index": index, "data-testid": "box" },
        el("span", { class: "rec-box-tag" }, `${index + 1} · ${object.label || "?"} `, el("b", { text: fixed(object.score, 2) }))));
    });
    return stage;
  }

  function feedbackControls() {
    return el("div", { class: "rec-feedback", "data-testid": "feedback" },
      el("span", { class: "rec-feedback-ask small muted", text: "Is this right?" }),
      el("button", { type: "button", class: "small", "data-verdict": "correct", text: "Correct" }),
      el("button", { type: "button", class: "small", "data-verdict": "wrong", text: "Wrong…" }),
      el("button", { type: "button", class: "small", "data-verdict": "not_in_catalogue", text: "Not in catalogue" }),
      el("span", { class: "rec-wrong", hidden: true },
        el("select", { "aria-label": "The right product", "data-testid": "right-product" }, el("option", { value: "", text: "Loading products…" })),
        el("button", { type: "button", class: "small primary", "data-action": "send-wrong", text: "Send" })),
      el("span", { class: "rec-feedback-status small", role: "status", "data-testid": "feedback-status" }));
  }

  /** The matched keypoints the server draws for a geometrically verified best match; removed when there are none. */
  function evidenceFigure(recognition, object, index) {
    if (!object.inliers || !object.reference_image) return null;
    const url = fill(urls.evidence, { id: recognition.id, index });
    const image = el("img", { src: url, alt: `Matched keypoints between object ${index + 1} and the reference image of ${object.label}` });
    const figure = el("figure", { class: "rec-evidence", "data-testid": "evidence" },
      el("a", { href: url, target: "_blank", rel: "noopener", title: "Open the matched keypoints full size" }, image),
      el("figcaption", { class: "small muted" }, `${object.inliers} keypoints of the photo (left) agree with the reference image of `,
        el("strong", { text: object.label }), " (right)"));
    image.addEventListener("error", () => figure.remove());
    return figure;
  }

  function objectCard(recognition, object, index) {
    const best = object.matches[0] || {};
    const matches = object.matches.map((match) => el("li", {
        "data-product-id": match.product_id, "data-label": match.label, class: match.product_id === best.product_id ? "same" : null },
      match.reference_image_id
        ? el("img", { src: fill(urls.thumb, { pk: match.reference_image_id }), alt: "", width: 64, height: 64, loading: "lazy" })
        : el("span", { class: "rec-thumb-empty" }),
      el("span", { class: "rec-match-label", title: match.label, text: match.label }),
      el("span", { class: "rec-match-score", text: fixed(match.score) }),
      match.inliers ? el("span", { class: "rec-match-inliers small muted", title: "keypoints that agree geometrically", text: `${match.inliers} inliers` }) : null));
    const figures = [
      typeof object.confidence === "number" ? `confidence ${fixed(object.confidence, 2)}` : null,
      object.inliers ? `verified: ${object.inliers} matching keypoints` : "not verified geometrically",
      object.margin !== null && object.margin !== undefined ? `margin ${fixed(object.margin)}` : null,
      object.whole_image ? "whole-photo candidate" : `detector ${fixed(object.det_score, 2)}`,
    ].filter(Boolean).join(" · ");
    return el("article", { class: `rec-object obj-c${index % BOX_COLOURS}`, "data-index": index, "data-testid": "object-card" },
      el("header", { class: "rec-object-head" },
        el("span", { class: "rec-swatch", "aria-hidden": "true", text: String(index + 1) }),
        el("strong", { class: "rec-object-label", "data-testid": "object-label", text: object.label || "?" }),
        object.display_name && object.display_name !== object.label ? el("span", { class: "muted small rec-display-name", text: object.display_name }) : null,
        el("span", { class: "rec-score", title: "similarity to the nearest reference image", text: fixed(object.score) })),
      el("div", { class: "rec-object-body" },
        el("figure", { class: "rec-crop" },
          el("img", { src: fill(urls.crop, { id: recognition.id, index }), alt: `Crop of object ${index + 1}`, width: 88, height: 88 }),
          el("figcaption", { text: object.whole_image ? "whole photo" : "detected" })),
        el("ol", { class: "rec-matches", "aria-label": "Nearest reference images" }, matches)),
      evidenceFigure(recognition, object, index),
      el("footer", { class: "rec-object-foot" }, el("span", { class: "muted small rec-figures", text: figures })),
      feedbackControls());
  }

  function timingChips(timings, roundTripMs) {
    const names = [["queue_ms", "queue"], ["detect_ms", "detect"], ["extract_ms", "extract"], ["search_ms", "search"], ["verify_ms", "verify"], ["total_ms", "worker total"]];
    const chips = names.filter(([key]) => typeof timings[key] === "number")
      .map(([key, name]) => el("span", { class: "rec-chip" }, el("span", { text: name }), ` ${Math.round(timings[key])} ms`));
    chips.push(el("span", { class: "rec-chip total" }, el("span", { text: "round trip" }), ` ${Math.round(roundTripMs)} ms`));
    return chips;
  }

  // --- Try it --------------------------------------------------------------------------------
  function initTryIt(panel) {
    const input = $("[data-testid=photo-input]", panel);
    const dropzone = $("[data-testid=dropzone]", panel);
    const busy = $("[data-testid=busy]", panel);
    const rerun = $("[data-testid=rerun]", panel);
    const gallery = $("[data-testid=gallery-select]", panel);
    const threshold = $("[data-testid=score-threshold]", panel);
    const topK = $("[data-testid=top-k]", panel);
    const errorBox = $("[data-testid=error]");
    const result = $("#rec-result");
    const maxBytes = Number(panel.dataset.maxBytes) || Infinity;
    let lastFile = null;
    let running = false;

    const remembered = localStorage.getItem("shitu.tryit.gallery");
    if (remembered && !new URLSearchParams(location.search).has("gallery") && $$("option", gallery).some((o) => o.value === remembered)) {
      gallery.value = remembered;
    }
    gallery.addEventListener("change", () => localStorage.setItem("shitu.tryit.gallery", gallery.value));

    input.addEventListener("change", () => {
      if (input.files.length) recognise(input.files[0]);
      input.value = ""; // choosing the same file again still fires "change"
    });
    for (const type of ["dragenter", "dragover"]) {
      dropzone.addEventListener(type, (event) => { event.preventDefault(); dropzone.classList.add("dragging"); });
    }
    dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      dropzone.classList.remove("dragging");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) recognise(file);
    });
    rerun.addEventListener("click", () => lastFile && recognise(lastFile));
    // The file input is hidden: the drop zone takes the keyboard, and a pasted screenshot works too.
    dropzone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
    });
    document.addEventListener("paste", (event) => {
      const item = [...(event.clipboardData?.items || [])].find((entry) => entry.kind === "file" && entry.type.startsWith("image/"));
      const file = item && item.getAsFile();
      if (file) { event.preventDefault(); recognise(file); }
    });

    function setBusy(on) {
      running = on;
      busy.hidden = !on;
      dropzone.classList.toggle("busy", on);
      rerun.disabled = on;
    }

    async function recognise(file) {
      if (running) return;
      lastFile = file;
      errorBox.hidden = true;
      if (file.size > maxBytes) {
        renderError(errorBox, { title: FRIENDLY.file_too_large, message: `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${(maxBytes / 1048576).toFixed(0)} MB.`, code: "file_too_large" });
        return;
      }
      const form = new FormData();
      form.append("image", file, file.name || "photo");
      form.append("gallery", gallery.value);
      form.append("score_threshold", threshold.value || "0.5");
      form.append("top_k", topK.value || "5");
      setBusy(true);
      const started = performance.now();
      try {
        let { status, body } = await api(urls.api, { method: "POST", body: form });
        if (status === 202 && body && body.url) ({ status, body } = await pollUntilDone(body.url));
        const roundTrip = performance.now() - started;
        if (status !== 200 || !body || body.error) {
          renderError(errorBox, describeError(status, body));
        } else if (body.status === "failed") {
          renderError(errorBox, { title: FRIENDLY[body.failure_code] || "Recognition failed.", message: body.failure_reason, code: body.failure_code });
        } else if (body.status === "queued") {
          renderError(errorBox, { title: FRIENDLY.timeout, message: "It is still queued: find it later under Recognitions.", code: "timeout" });
        } else {
          show(body, file, roundTrip);
        }
      } finally {
        setBusy(false);
        rerun.hidden = !lastFile;
      }
    }

    async function pollUntilDone(url) {
      const deadline = performance.now() + POLL_SECONDS * 1000;
      let answer;
      do {
        await sleep(1000);
        answer = await api(url);
      } while (answer.status === 200 && answer.body && answer.body.status === "queued" && performance.now() < deadline);
      return answer;
    }

    function show(recognition, file, roundTrip) {
      const count = recognition.objects.length;
      const threshold = recognition.params && recognition.params.score_threshold;
      $("[data-testid=result-title]", result).textContent = count
        ? `${count} object${count === 1 ? "" : "s"} in ${file.name || "the photo"}`
        : `No match in ${file.name || "the photo"}: nothing reached the gallery's confidence or the score threshold (${threshold})`;
      $("[data-testid=timings]", result).replaceChildren(...timingChips(recognition.timings_ms || {}, roundTrip));
      $("[data-testid=open-recognition]", result).href = fill(urls.detail, { id: recognition.id });
      result.dataset.feedbackUrl = `${recognition.url}feedback/`;
      result.dataset.gallery = recognition.gallery;
      $(".rec-stage-wrap", result).replaceChildren(drawStage(recognition));
      const cards = recognition.objects.map((object, index) => objectCard(recognition, object, index));
      $("[data-testid=objects]", result).replaceChildren(...(cards.length ? cards
        : [el("p", { class: "card muted rec-nothing", text: "The product is probably not in this gallery. Add reference photos of it, or lower the score threshold to see weaker matches." })]));
      result.hidden = false;
    }
  }

  // --- feedback on objects (Try-it and a recognition's page) ----------------------------------
  const productLists = new Map();

  function galleryProducts(galleryId) {
    if (!productLists.has(galleryId)) {
      productLists.set(galleryId, (async () => {
        const products = [];
        let url = `${urls.products_api}?gallery=${encodeURIComponent(galleryId)}&limit=200`;
        for (let page = 0; url && page < PRODUCT_PAGES; page += 1) {
          const { status, body } = await api(url);
          if (status !== 200 || !body) throw describeError(status, body);
          products.push(...(body.results || body));
          url = body.next || null;
        }
        return products;
      })().catch((error) => { productLists.delete(galleryId); throw error; }));
    }
    return productLists.get(galleryId);
  }

  function setStatus(card, text, tone) {
    const status = $("[data-testid=feedback-status]", card);
    status.textContent = text;
    status.className = `rec-feedback-status small ${tone || ""}`;
  }

  async function openWrongPicker(card, result) {
    const picker = $(".rec-wrong", card);
    const select = $("select", picker);
    picker.hidden = false;
    const items = $$(".rec-matches li", card);
    const predicted = items.length ? items[0].dataset.productId : null;
    const candidates = new Map();
    for (const item of items) {
      if (item.dataset.productId !== predicted && !candidates.has(item.dataset.productId)) candidates.set(item.dataset.productId, item.dataset.label);
    }
    try {
      const products = await galleryProducts(result.dataset.gallery);
      const others = products.filter((p) => String(p.id) !== predicted && !candidates.has(String(p.id)));
      const option = (id, label) => el("option", { value: id, text: label });
      select.replaceChildren(
        el("option", { value: "", text: "The right product…" }),
        candidates.size ? el("optgroup", { label: "Close candidates" }, [...candidates].map(([id, label]) => option(id, label))) : null,
        others.length ? el("optgroup", { label: "All products" }, others.map((p) => option(p.id, p.label))) : null);
      select.focus();
    } catch (error) {
      select.replaceChildren(el("option", { value: "", text: "Could not load products" }));
      setStatus(card, error.title || "Could not load the gallery's products.", "bad");
    }
  }

  async function sendFeedback(card, result, verdict, product) {
    const payload = { object: Number(card.dataset.index), verdict };
    if (product) payload.product = Number(product.id);
    setStatus(card, "Sending…", "");
    const { status, body } = await api(result.dataset.feedbackUrl, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
    });
    if (status !== 201) {
      const { title, message } = describeError(status, body);
      setStatus(card, message ? `${title} ${message}` : title, "bad");
      return;
    }
    $$(".rec-feedback button[data-verdict]", card).forEach((button) => button.classList.toggle("chosen", button.dataset.verdict === verdict));
    $(".rec-wrong", card).hidden = true;
    const label = $("[data-testid=object-label]", card).textContent;
    const messages = {
      correct: `Thanks: confirmed as ${label}.`,
      wrong: `Flagged: this is ${product && product.label}. An admin will review it.`,
      not_in_catalogue: "Flagged as a product that is not in the catalogue. An admin will review it.",
    };
    setStatus(card, messages[verdict], "ok");
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest(".rec-feedback button");
    if (!button) return;
    const card = button.closest("[data-testid=object-card]");
    const result = button.closest("[data-feedback-url]");
    if (!card || !result) return;
    if (button.dataset.verdict === "wrong") {
      openWrongPicker(card, result);
    } else if (button.dataset.verdict) {
      sendFeedback(card, result, button.dataset.verdict);
    } else if (button.dataset.action === "send-wrong") {
      const select = $(".rec-wrong select", card);
      if (!select.value) {
        setStatus(card, "Choose the right product first.", "bad");
        return;
      }
      sendFeedback(card, result, "wrong", { id: select.value, label: select.selectedOptions[0].textContent });
    }
  });

  // Hovering a card or a box lights up both.
  function highlight(event, on) {
    const target = event.target.closest && event.target.closest(".rec-result [data-index]");
    if (!target) return;
    const result = target.closest(".rec-result");
    $$(`[data-index="${target.dataset.index}"]`, result).forEach((node) => node.classList.toggle("hl", on));
  }
  document.addEventListener("mouseover", (event) => highlight(event, true));
  document.addEventListener("mouseout", (event) => highlight(event, false));

  // --- review queue: tick every row of the page -----------------------------------------------
  for (const master of $$("[data-select-all]")) {
    master.addEventListener("change", () => {
      $$(`input[type=checkbox][form="${master.dataset.selectAll}"][name=review]`).forEach((box) => { box.checked = master.checked; });
    });
  }

  const panel = document.getElementById("rec-try");
  if (panel) initTryIt(panel);
})();
