// Kernos dashboard: live updates over the event stream, theme toggle, confirmations,
// keyboard shortcuts. Pages work without it; it only refreshes what is on screen.
"use strict";
(function () {
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("kernos-theme"); } catch (e) { /* storage off */ }
  if (saved === "dark" || saved === "light") { root.setAttribute("data-theme", saved); }

  var KINDS = ["run.created", "run.enqueued", "run.started", "run.succeeded", "run.failed",
    "run.cancelled", "run.paused", "run.pause_requested", "run.resumed", "run.released",
    "run.waiting", "run.superseded", "child.done", "sleep.done", "message.sent",
    "dependency.done", "checkpoint", "agent.usage",
    "approval.requested", "approval.escalated", "approval.decided"];
  ["step", "llm", "tool", "sleep", "recv", "child", "checkpoint", "enqueue"].forEach(function (k) {
    KINDS.push(k + ".completed", k + ".failed");
  });

  function refresh(live) {
    // Never wipe what a person is typing (a comment, edited arguments): try again later.
    var active = document.activeElement;
    var typing = active && live.contains(active) && /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName);
    if (typing || live.querySelector("details.edit[open]")) {
      setTimeout(function () { refresh(live); }, 1000);
      return;
    }
    fetch(location.href, { headers: { "X-Kernos-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        live.innerHTML = html;
        live.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next event retries */ });
  }

  function watch(live) {
    if (!window.EventSource) { return; }
    var kind = live.getAttribute("data-live");
    if (kind === "runs" && live.getAttribute("data-first-page") !== "yes") { return; }
    var url = "/api/v1/events";
    if (kind === "run") { url += "?run_id=" + encodeURIComponent(live.getAttribute("data-run-id")); }
    var source = new EventSource(url, { withCredentials: true });
    var timer = null;
    var onEvent = function () {
      if (timer !== null) { return; }
      timer = setTimeout(function () { timer = null; refresh(live); }, 150);
    };
    KINDS.forEach(function (k) { source.addEventListener(k, onEvent); });
    source.onmessage = onEvent;
    if (kind === "run") {
      source.addEventListener("llm.delta", function (event) { streamed(live, event, onEvent); });
    }
    live.setAttribute("data-stream", "open");
  }

  // Model output as it arrives: each llm.delta event's text is appended (as text, never
  // HTML) to its call's box; a gap in the indexes fetches the page part again instead.
  function streamed(live, event, refetch) {
    var message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    var d = message && message.data;
    if (!d || typeof d.seq !== "number" || typeof d.index !== "number" || typeof d.text !== "string") { return; }
    var streams = live.querySelector("[data-streams]");
    if (!streams) { return; }
    var box = streams.querySelector('pre[data-stream-seq="' + d.seq + '"]');
    if (!box) {
      var card = document.createElement("div");
      card.className = "card stream";
      var title = document.createElement("h3");
      title.textContent = "#" + d.seq + " model output ";
      var note = document.createElement("span");
      note.className = "muted";
      note.textContent = "streaming";
      title.appendChild(note);
      box = document.createElement("pre");
      box.setAttribute("data-stream-seq", String(d.seq));
      box.setAttribute("data-attempt", String(d.attempt || 0));
      box.setAttribute("data-next-index", "0");
      box.setAttribute("aria-live", "polite");
      card.appendChild(title);
      card.appendChild(box);
      streams.appendChild(card);
    }
    var attempt = String(d.attempt || 0);
    if (box.getAttribute("data-attempt") !== attempt) {
      if (Number(attempt) < Number(box.getAttribute("data-attempt"))) { return; }
      box.textContent = "";
      box.setAttribute("data-attempt", attempt);
      box.setAttribute("data-next-index", "0");
    }
    var next = Number(box.getAttribute("data-next-index"));
    if (d.index < next) { return; }
    if (d.index > next) { refetch(); return; }
    box.appendChild(document.createTextNode(d.text));
    box.setAttribute("data-next-index", String(next + 1));
  }

  function rows() {
    var list = document.querySelector("[data-rows] tbody") || document.querySelector("ol[data-rows]");
    return list ? Array.prototype.slice.call(list.children) : [];
  }
  var cursor = -1;
  function move(step) {
    var all = rows();
    if (!all.length) { return; }
    if (cursor >= 0 && all[cursor]) { all[cursor].classList.remove("cursor"); }
    cursor = Math.max(0, Math.min(all.length - 1, cursor + step));
    all[cursor].classList.add("cursor");
    all[cursor].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live) { watch(live); }
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var dark = root.getAttribute("data-theme") ? root.getAttribute("data-theme") === "dark"
          : window.matchMedia("(prefers-color-scheme: dark)").matches;
        var next = dark ? "light" : "dark";
        root.setAttribute("data-theme", next);
        try { localStorage.setItem("kernos-theme", next); } catch (e) { /* storage off */ }
      });
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.key === "/") {
      var search = document.querySelector("[data-search]");
      if (search) { event.preventDefault(); search.focus(); }
    } else if (event.key === "j") { move(1); }
    else if (event.key === "k") { move(-1); }
    else if (event.key === "Enter" && cursor >= 0) {
      var link = rows()[cursor] && rows()[cursor].querySelector("a");
      if (link) { link.click(); }
    } else if (event.key === "?") {
      var help = document.getElementById("help");
      if (help && help.showModal) { help.showModal(); }
    }
  });
}());
