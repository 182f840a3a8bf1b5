/* The stylebatch page: upload straight to blob storage, follow jobs, steer one.
   Everything the page shows comes from the app's API (/api/...); every text is set with
   textContent, never parsed as HTML. */
"use strict";
(function () {
  const BLOCK = 4 * 1024 * 1024;  // bytes per Put Block
  const API = location.pathname.replace(/\/ui\/?$/, "");
  const KEY = new URLSearchParams(location.search).get("code");
  const TERMINAL = ["completed", "failed", "cancelled"];
  const $ = (id) => document.getElementById(id);
  let timer = null;

  function url(path) {
    return API + "/" + path + (KEY ? (path.includes("?") ? "&" : "?") + "code=" +
                               encodeURIComponent(KEY) : "");
  }
  async function api(path, options) {
    const resp = await fetch(url(path), options);
    const text = await resp.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
    if (!resp.ok) throw new Error((body && body.error) || ("HTTP " + resp.status));
    return body;
  }
  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function eta(s) {
    if (s === null || s === undefined) return "";
    s = Math.round(s);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
  function bar(percent, label) {
    return el("progress", null, { max: "100", value: String(percent || 0), "aria-label": label });
  }

  /* -- upload ------------------------------------------------------------------------------ */

  function putXhr(target, body, headers, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", target);
      for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => (xhr.status >= 200 && xhr.status < 300) ? resolve(xhr)
        : reject(new Error("storage refused the upload (HTTP " + xhr.status + ")"));
      xhr.onerror = () => reject(new Error("the upload did not reach storage"));
      xhr.send(body);
    });
  }

  async function uploadBlocks(file, issued, progress) {
    const ids = [];
    let sent = 0;
    const version = { "x-ms-version": "2021-08-06" };
    for (let start = 0, n = 0; start < file.size || n === 0; start += BLOCK, n++) {
      const id = btoa("block-" + String(n).padStart(6, "0"));
      const part = file.slice(start, start + BLOCK);
      await putXhr(issued.url + "&comp=block&blockid=" + encodeURIComponent(id), part, version,
                   (loaded) => progress(sent + loaded));
      sent += part.size;
      progress(sent);  // each block stored moves the bar, whatever the browser's upload events
      ids.push(id);
      if (file.size === 0) break;
    }
    const xml = '<?xml version="1.0" encoding="utf-8"?><BlockList>' +
      ids.map((id) => "<Latest>" + id + "</Latest>").join("") + "</BlockList>";
    await putXhr(issued.url + "&comp=blocklist", xml, Object.assign({}, version,
      { "x-ms-blob-content-type": file.type || "application/octet-stream" }), () => {});
    progress(file.size);
  }

  async function onUpload(event) {
    event.preventDefault();
    const file = $("file").files[0];
    const msg = $("upload-msg");
    msg.className = "";
    if (!file) { msg.textContent = "Choose a video first."; return; }
    const style = (document.querySelector("input[name=style]:checked") || {}).value;
    const model = $("model").value;
    $("go").disabled = true;
    setUploadPercent(0);
    try {
      msg.textContent = "Asking for an upload URL…";
      const issued = await api("uploads", { method: "POST", headers: { "content-type":
        "application/json" }, body: JSON.stringify({ name: file.name, size: file.size,
        style: style, model: model }) });
      msg.textContent = "Uploading " + issued.blob + "…";
      await uploadBlocks(file, issued, (done) =>
        setUploadPercent(file.size ? 100 * done / file.size : 100));
      msg.textContent = "Uploaded " + issued.blob + "; waiting for its job to start…";
      const id = await uploadedJob(issued.blob);
      msg.textContent = "Uploaded " + issued.blob + ": job " + id + ". ";
      msg.appendChild(el("a", "Follow it", { href: "#job/" + id }));
      refreshJobs();
    } catch (e) {
      msg.className = "error";
      msg.textContent = "Upload refused: " + e.message;
    } finally {
      $("go").disabled = false;
    }
  }

  // The upload starts its job itself (the blob trigger, as the caller who asked for the
  // upload URL); the page finds that job rather than starting another.
  async function uploadedJob(blob) {
    const until = Date.now() + 120000;
    for (;;) {
      const found = await api("uploads?blob=" + encodeURIComponent(blob));
      if (found.started) return found.job;
      if (Date.now() > until) throw new Error("no job started for " + blob + " in 2 minutes");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  function setUploadPercent(p) {
    $("upload-progress").value = p;
    $("upload-percent").textContent = Math.floor(p) + " %";
  }

  async function addStyle() {
    const file = $("new-style").files[0];
    const msg = $("style-msg");
    if (!file) return;
    msg.className = "";
    try {
      const issued = await api("uploads", { method: "POST", headers: { "content-type":
        "application/json" }, body: JSON.stringify({ kind: "style", name: file.name }) });
      await putXhr(issued.url, file, Object.assign({ "x-ms-version": "2021-08-06",
        "x-ms-blob-content-type": file.type || "image/jpeg" }, issued.headers), () => {});
      msg.textContent = "Added style " + issued.style + ".";
      await loadStyles(issued.style);
    } catch (e) {
      msg.className = "error";
      msg.textContent = "Style refused: " + e.message;
    }
    $("new-style").value = "";
  }

  async function loadStyles(selected) {
    const box = $("styles");
    try {
      const data = await api("styles");
      box.replaceChildren(el("legend", "Style"));
      data.styles.forEach((s) => {
        const label = el("label");
        const input = el("input", null, { type: "radio", name: "style", value: s.name });
        if (s.name === (selected || data.default_style)) input.checked = true;
        label.append(input, el("img", null, { src: s.url, alt: "" }), el("span", s.name));
        box.appendChild(label);
      });
      if (!document.querySelector("input[name=style]:checked") && data.styles.length)
        box.querySelector("input").checked = true;
      $("model").replaceChildren(...data.models.map((m) => {
        const o = el("option", m, { value: m });
        if (m === data.default_model) o.selected = true;
        return o;
      }));
    } catch (e) {
      box.replaceChildren(el("legend", "Style"), el("p", "Styles unavailable: " + e.message,
                                                    { class: "error" }));
    }
  }

  function setupDrop() {
    const drop = $("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files.length) $("file").files = e.dataTransfer.files;
    });
  }

  /* -- jobs table --------------------------------------------------------------------------- */

  async function refreshJobs() {
    let data;
    try { data = await api("jobs?limit=50"); } catch (e) { return; }
    const rows = data.jobs.map((j) => {
      const tr = el("tr");
      const link = el("td");
      link.appendChild(el("a", j.id, { href: "#job/" + j.id }));
      const state = el("td", j.state, { class: "state-" + j.state });
      const progress = el("td", null, { class: "bar" });
      progress.append(bar(j.percent, "progress of " + j.id), " " + j.percent + " %");
      const notes = [];
      if (j.error) notes.push(j.error);
      (j.warnings || []).forEach((w) => notes.push("warning: " + w));
      tr.append(link, el("td", j.input), el("td", j.style + " / " + j.model), state, progress,
        el("td", j.frames.total ? j.frames.done + "/" + j.frames.total : ""),
        el("td", j.chunks.total ? j.chunks.done + "/" + j.chunks.total +
           (j.chunks.running ? " (" + j.chunks.running + " running)" : "") : ""),
        el("td", eta(j.eta_seconds)), el("td", (j.retries || []).length || ""),
        el("td", notes.join("; "), { class: j.error ? "error" : "" }));
      return tr;
    });
    if (!rows.length) {
      const none = el("tr");
      none.appendChild(el("td", "No jobs yet: upload a video above.", { colspan: "10",
                                                                        class: "muted" }));
      rows.push(none);
    }
    $("jobs").tBodies[0].replaceChildren(...rows);
  }

  /* -- one job ------------------------------------------------------------------------------ */

  // One job's status and its chunk tasks' timeline: the one place the page reads them.
  async function jobStatus(id) {
    const j = await api("jobs/" + encodeURIComponent(id));
    return { job: j, tasks: j.tasks || [], since: j.tasks_since || null };
  }

  async function refreshJob(id) {
    let j, timeline;
    try {
      const s = await jobStatus(id);
      j = s.job;
      timeline = s;
    } catch (e) {
      $("job-error").textContent = e.message;
      return;
    }
    $("job-h").textContent = "Job " + j.id;
    const facts = [["state", j.state], ["input", j.input], ["style", j.style],
      ["model", j.model], ["frames", j.frames.done + " / " + j.frames.total],
      ["chunks", j.chunks.done + " / " + j.chunks.total + " done, " + j.chunks.running +
       " running, " + j.chunks.failed + " failed"], ["ETA", eta(j.eta_seconds) || "—"],
      ["retries", (j.retries || []).map((r) => "chunk " + r.chunk + ": " + r.error)
        .join("; ") || "none"], ["result", (j.state === "failed" || j.state === "cancelled" ? null : j.output) || "—"], ["updated", j.updated]];
    $("job-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
    $("job-facts").querySelector("dd").className = "state-" + j.state;
    $("job-progress").value = j.percent;
    $("job-percent").textContent = j.percent + " %";
    $("job-error").textContent = j.error ? "Failed: " + j.error : "";
    $("job-warnings").replaceChildren(...(j.warnings || []).map((w) => el("li", w)));
    $("cancel").disabled = TERMINAL.includes(j.state);
    $("retry").disabled = !(j.state === "failed" || j.state === "cancelled");
    $("retry").dataset.blob = j.input.replace(/^incoming\//, "");
    $("retry").dataset.style = j.style;
    $("retry").dataset.model = j.model;
    // Running tasks extend to now (this browser's clock, never before the last update); an
    // ended job's to its last update.
    const until = TERMINAL.includes(j.state) ? Date.parse(j.updated)
      : Math.max(Date.now(), Date.parse(j.updated));
    drawTimeline(timeline.tasks, timeline.since ? (until - Date.parse(timeline.since)) / 1000
                                                : 0, TERMINAL.includes(j.state));
    if (j.state === "completed" && $("preview-fig").hidden) {
      const links = await api("jobs/" + encodeURIComponent(id) + "/links");
      $("preview").src = links.preview;
      $("preview-fig").hidden = false;
      $("play").href = links.play;
      $("download").href = links.download;
      $("play").hidden = $("download").hidden = false;
    }
  }

  // One lane per chunk task attempt: grey while it waited for a node, then its run (blue
  // succeeded, red failed, light blue running, striped: stopped when the job ended), with how
  // long it waited and ran in words beside it. Times are seconds since the first task queued.
  function drawTimeline(tasks, now, ended) {
    const box = $("timeline");
    if (!tasks.length) {
      box.replaceChildren(el("p", ended ? "No chunk task ran." : "No chunk task has run yet.",
                             { class: "muted" }));
      return;
    }
    // From the first task's queueing to the last end (or now, while tasks run).
    const origin = Math.min(...tasks.map((t) => t[2] !== null ? t[2] : t[3]));
    const end = Math.max(now || 0, ...tasks.map((t) => t[4] !== null ? t[4] : t[3])) - origin;
    const pct = (s) => (100 * Math.max(0, (s === null ? origin : s) - origin) /
                        Math.max(end, 0.1)).toFixed(2) + "%";
    const words = { S: "succeeded", F: "failed", R: "running", P: "pending", X: "stopped",
                    "-": "unknown" };
    const lanes = tasks.map(([chunk, attempt, queued, started, ended_at, code, node]) => {
      if (ended && ended_at === null && (code === "R" || code === "P")) code = "X";
      const ran = ended_at !== null ? (ended_at - started).toFixed(1) + " s"
        : (code === "X" ? "until the job ended" : "running");
      const waited = (started - (queued !== null ? queued : started)).toFixed(1) + " s";
      const label = "chunk " + chunk + " attempt " + attempt + ": " + words[code] +
        ", waited " + waited + ", ran " + ran + (node ? " on " + node : "");
      const lane = el("div", null, { class: "lane", role: "listitem", title: label,
                                     "aria-label": label });
      const track = el("div", null, { class: "track" });
      const wait = el("div", null, { class: "wait" });
      wait.style.left = pct(queued); wait.style.width = "calc(" + pct(started) + " - " +
        pct(queued) + ")";
      const run = el("div", null, { class: "run " + code });
      run.style.left = pct(started);
      run.style.width = "calc(" + pct(ended_at !== null ? ended_at : end + origin) + " - " +
        pct(started) + ")";
      track.append(wait, run);
      lane.append(el("span", "#" + chunk + (attempt > 1 ? " try " + attempt : ""),
                     { class: "name" }), track,
                  el("span", words[code] + (ended_at !== null ? " in " + ran : "") +
                     ", waited " + waited, { class: "took " + code, "aria-hidden": "true" }));
      return lane;
    });
    const axis = el("div", null, { class: "lane axis", "aria-hidden": "true" });
    axis.append(el("span", "", { class: "name" }), el("span", "0 s", { class: "track" }),
                el("span", end.toFixed(1) + " s", { class: "took" }));
    box.replaceChildren(...lanes, axis);
  }

  async function cancelJob() {
    const id = location.hash.slice(5);
    try {
      await api("jobs/" + encodeURIComponent(id), { method: "DELETE" });
      $("job-msg").textContent = "Cancel requested.";
    } catch (e) { $("job-msg").textContent = "Cancel refused: " + e.message; }
    refreshJob(id);
  }

  async function retryJob() {
    const b = $("retry").dataset;
    try {
      const job = await api("jobs", { method: "POST", headers: { "content-type":
        "application/json" }, body: JSON.stringify({ blob: b.blob, style: b.style,
        model: b.model }) });
      $("job-msg").textContent = job.started ? "Started again." : "The job is already running.";
      if (location.hash !== "#job/" + job.id) location.hash = "#job/" + job.id;
    } catch (e) { $("job-msg").textContent = "Retry refused: " + e.message; }
  }

  /* -- views -------------------------------------------------------------------------------- */

  function route() {
    clearInterval(timer);
    const m = location.hash.match(/^#job\/([a-z0-9-]{1,48})$/);
    $("home-view").hidden = !!m;
    $("job-view").hidden = !m;
    if (m) {
      $("preview-fig").hidden = $("play").hidden = $("download").hidden = true;
      $("job-msg").textContent = "";
      refreshJob(m[1]);
      timer = setInterval(() => refreshJob(m[1]), 1500);
      $("job-h").setAttribute("tabindex", "-1");
      $("job-h").focus();  // keyboard and screen-reader users land on the job
    } else {
      refreshJobs();
      timer = setInterval(refreshJobs, 2000);
    }
  }

  setupDrop();
  $("upload-form").addEventListener("submit", onUpload);
  $("new-style").addEventListener("change", addStyle);
  $("cancel").addEventListener("click", cancelJob);
  $("retry").addEventListener("click", retryJob);
  window.addEventListener("hashchange", route);
  loadStyles();
  route();
})();
