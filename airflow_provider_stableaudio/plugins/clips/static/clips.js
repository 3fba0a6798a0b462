// The Clips page: plain JavaScript, no build step. Every URL is relative to the app's root (the
// page's <base href>), so it works under any base_url; requests carry the UI's cookie (same origin).
"use strict";

(function () {
  const list = document.getElementById("clips");
  const status = document.getElementById("status");
  const totals = document.getElementById("totals");
  const form = document.getElementById("filters");
  const fields = {
    dag_id: document.getElementById("filter-dag"),
    model: document.getElementById("filter-model"),
    since: document.getElementById("filter-since"),
    until: document.getElementById("filter-until"),
  };

  // The task instance tab opens ui/ti/<dag>/<run>/<task>/<map index>.
  function taskInstance() {
    const match = window.location.pathname.match(/\/ui\/ti\/([^/]+)\/([^/]+)\/([^/]+)\/([^/]*)$/);
    if (!match) return null;
    const mapIndex = parseInt(decodeURIComponent(match[4]), 10);
    return {
      dag_id: decodeURIComponent(match[1]),
      run_id: decodeURIComponent(match[2]),
      task_id: decodeURIComponent(match[3]),
      map_index: Number.isInteger(mapIndex) ? mapIndex : -1, // "{MAP_INDEX}" left as is: not mapped
    };
  }

  // The Airflow UI's root: the parent's <base> inside its iframe, else the folder above this app.
  function uiBase() {
    try {
      if (window.parent !== window && window.parent.document.baseURI) return window.parent.document.baseURI;
    } catch (e) { /* not the same origin: fall through */ }
    return new URL("../", document.baseURI).href;
  }

  // Inside the UI's iframe (sandboxed, no top navigation), a link moves the UI itself through its
  // router's history, as its own links do; opened on its own, the page follows links normally.
  function follow(event) {
    const href = event.currentTarget.href;
    try {
      if (window.parent === window) return;
      const target = new URL(href);
      const history = window.parent.history;
      const idx = (history.state && Number.isInteger(history.state.idx) ? history.state.idx : 0) + 1;
      history.pushState({ usr: null, key: Math.random().toString(36).slice(2, 10), idx: idx }, "",
        target.pathname + target.search);
      window.parent.dispatchEvent(new PopStateEvent("popstate", { state: history.state }));
      event.preventDefault();
    } catch (e) { /* let the browser follow it */ }
  }

  function element(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "length unknown";
    const whole = Math.round(value * 10) / 10;
    return whole >= 60 ? `${Math.floor(whole / 60)}:${String(Math.round(whole % 60)).padStart(2, "0")} min` : `${whole} s`;
  }

  function link(text, path) {
    const anchor = element("a", { href: new URL(path, uiBase()).href }, text);
    anchor.addEventListener("click", follow);
    return anchor;
  }

  function problem(article, message) {
    let node = article.querySelector(".problem");
    if (!node) {
      node = element("p", { class: "problem", role: "alert" });
      article.appendChild(node);
    }
    node.textContent = message;
    article.dataset.problem = message;
  }

  // What a failed <audio> means: ask the app (its JSON says why), or blame the URL.
  async function explain(article, clip) {
    if (!clip.src.startsWith("api/")) {
      problem(article, "The clip's URL no longer answers: it may have expired, and the clip was not stored.");
      return;
    }
    try {
      const answer = await fetch(clip.src, { headers: { Range: "bytes=0-0" }, credentials: "same-origin" });
      if (!answer.ok) {
        const body = await answer.json().catch(() => ({}));
        problem(article, body.detail || `The clip could not be loaded (HTTP ${answer.status}).`);
        return;
      }
    } catch (e) { /* fall through */ }
    problem(article, "The browser could not play this clip.");
  }

  // The waveform: peaks of the decoded audio, drawn once the clip scrolls into view.
  async function drawWave(canvas, src) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.floor(canvas.clientWidth * ratio));
    canvas.height = Math.floor(56 * ratio);
    const context = canvas.getContext("2d");
    try {
      const answer = await fetch(src, { credentials: "same-origin" });
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const decoder = new OfflineAudioContext(1, 1, 44100);
      const buffer = await decoder.decodeAudioData(await answer.arrayBuffer());
      const samples = buffer.getChannelData(0);
      const columns = canvas.width;
      const step = Math.max(1, Math.floor(samples.length / columns));
      const middle = canvas.height / 2;
      context.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--wave") || "#0d9488";
      for (let x = 0; x < columns; x++) {
        let low = 0, high = 0;
        for (let i = x * step; i < Math.min(samples.length, (x + 1) * step); i++) {
          if (samples[i] < low) low = samples[i];
          if (samples[i] > high) high = samples[i];
        }
        context.fillRect(x, middle - high * middle, 1, Math.max(1, (high - low) * middle));
      }
      canvas.dataset.drawn = "true";
    } catch (e) {
      canvas.dataset.drawn = "false";
      canvas.title = "No waveform: the audio could not be read here";
    }
  }

  const waves = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      waves.unobserve(entry.target);
      drawWave(entry.target, entry.target.dataset.src);
    }
  }) : null;

  function render(clip) {
    const article = element("article", { class: "clip", "data-clip-id": clip.id, "data-dag-id": clip.dag_id });
    article.appendChild(element("h2", {}, clip.prompt || "(prompt not recorded)"));
    const meta = element("div", { class: "meta" });
    meta.appendChild(element("span", { class: "model" }, clip.model || "model not recorded"));
    meta.appendChild(element("span", { class: "service" }, clip.service));
    meta.appendChild(element("span", { class: "length", "data-seconds": clip.seconds ?? "" }, seconds(clip.seconds)));
    meta.appendChild(element("span", { class: "credits" }, clip.credits === null ? "credits not reported" : `${clip.credits} credits`));
    meta.appendChild(element("time", { datetime: clip.created }, new Date(clip.created).toLocaleString()));
    article.appendChild(meta);
    const links = element("div", { class: "links" });
    const dag = encodeURIComponent(clip.dag_id);
    const run = `dags/${dag}/runs/${encodeURIComponent(clip.run_id)}`;
    let task = `${run}/tasks/${encodeURIComponent(clip.task_id)}`;
    if (clip.map_index >= 0) task += `/mapped/${clip.map_index}`;
    links.appendChild(link(clip.dag_id, `dags/${dag}`));
    links.appendChild(link(`run ${clip.run_id}`, run));
    links.appendChild(link(`task ${clip.task_id}${clip.map_index >= 0 ? `[${clip.map_index}]` : ""}`, task));
    article.appendChild(links);
    if (clip.src) {
      const canvas = element("canvas", { class: "wave", "data-src": clip.src, "aria-hidden": "true" });
      article.appendChild(canvas);
      const player = element("audio", { controls: "", preload: "metadata", src: clip.src });
      player.addEventListener("error", () => explain(article, clip));
      article.appendChild(player);
      if (waves) waves.observe(canvas); else drawWave(canvas, clip.src);
    }
    if (clip.problem) problem(article, clip.problem);
    return article;
  }

  function fill(select, values) {
    const chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const value of values) select.appendChild(element("option", { value: value }, value));
    select.value = values.includes(chosen) ? chosen : "";
  }

  async function load() {
    const ti = taskInstance();
    const query = new URLSearchParams();
    for (const [name, input] of Object.entries(ti || fields)) {
      const value = ti ? String(input) : input.value;
      if (value !== "") query.set(name, value);
    }
    status.textContent = "Loading clips…";
    status.hidden = false;
    const answer = await fetch(`${ti ? "api/task-instance" : "api/clips"}?${query}`, { credentials: "same-origin" });
    if (!answer.ok) {
      status.textContent = answer.status === 401 || answer.status === 403
        ? "Sign in to Airflow to see the clips." : `Could not load the clips (HTTP ${answer.status}).`;
      return;
    }
    const body = await answer.json();
    list.replaceChildren(...body.clips.map(render));
    const credits = Math.round(body.total_credits * 100) / 100;
    totals.textContent = `${body.total_clips} clip${body.total_clips === 1 ? "" : "s"} · ${credits} credits`;
    totals.dataset.clips = body.total_clips;
    totals.dataset.credits = body.total_credits;
    if (ti) {
      document.getElementById("title").textContent = `Clip of ${ti.task_id}`;
    } else {
      form.hidden = false;
      fill(fields.dag_id, body.dags);
      fill(fields.model, body.models);
    }
    status.textContent = body.clips.length ? "" : (ti ? "This task instance delivered no clip." : "No clips match.");
    status.hidden = body.clips.length > 0;
    document.body.dataset.loaded = "true";
  }

  form.addEventListener("change", () => load());
  form.addEventListener("reset", () => setTimeout(load, 0));
  load().catch((error) => { status.textContent = `Could not load the clips: ${error}`; });
})();
