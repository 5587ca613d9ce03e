// Dagy's dashboard. One delegated click listener for the graph, the timeline and the task
// panel; while a run is live, a poll of /api/runs/{id} that updates the graph's node states,
// the header and (from server-rendered fragments) the timeline, the open task and the logs.
(function () {
  "use strict";

  document.addEventListener("submit", function (e) {
    var question = e.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });

  // The runs list: while a row shows a run that is not over, the page is read again every few
  // seconds and the rows it still lists are updated in place (status, duration, "now on").
  var runsTable = document.querySelector("table.runs");
  if (runsTable) followRuns(runsTable);

  function followRuns(table) {
    var LIVE = { pending: 1, running: 1 };
    function rows(root) { return root.querySelectorAll("tbody tr[data-run-id]"); }
    function live() {
      return Array.prototype.some.call(rows(table), function (tr) {
        return LIVE[tr.getAttribute("data-status")] === 1;
      });
    }
    function tick() {
      fetch(location.pathname + location.search, { cache: "no-store" })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.text();
        })
        .then(function (html) {
          var fresh = new Map();
          rows(new DOMParser().parseFromString(html, "text/html")).forEach(function (tr) {
            fresh.set(tr.getAttribute("data-run-id"), tr);
          });
          rows(table).forEach(function (tr) {
            var next = fresh.get(tr.getAttribute("data-run-id"));
            if (!next) return;
            if (next.innerHTML !== tr.innerHTML) tr.innerHTML = next.innerHTML;
            tr.setAttribute("data-status", next.getAttribute("data-status"));
          });
          if (live()) setTimeout(tick, 3000);
        })
        .catch(function () { setTimeout(tick, 10000); });
    }
    if (live()) setTimeout(tick, 3000);
  }

  var run = document.querySelector(".run[data-run-id]");
  if (!run) return;

  var path = run.getAttribute("data-run-path");
  var panel = document.getElementById("task-panel");
  var timeline = document.getElementById("timeline");
  var logs = document.getElementById("logs");
  var nodes = new Map();
  document.querySelectorAll("#dag .node").forEach(function (n) {
    nodes.set(n.getAttribute("data-task-id"), n);
  });
  var FINAL = { completed: 1, failed: 1, timed_out: 1, cancelled: 1 };
  var ORDER = ["completed", "running", "retrying", "pending", "failed", "timed_out", "skipped", "cancelled"];
  var selected = null;
  var seen = {}; // task id -> "status/attempts" at the last poll
  var panelState = null; // the selected task's "status/attempts" when its panel was loaded
  var polls = 0;
  // A large run is polled less often: each poll reads every task from the store.
  var every = nodes.size < 300 ? 1000 : 2000;
  var failures = 0;
  var staleNote = null;

  function words(status) { return status.replace(/_/g, " "); }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // The same text as the server's format_duration.
  function duration(ms) {
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    if (ms < 3600000) return Math.floor(ms / 60000) + "m " + pad(Math.floor((ms % 60000) / 1000)) + "s";
    if (ms < 86400000) return Math.floor(ms / 3600000) + "h " + pad(Math.floor((ms % 3600000) / 60000)) + "m";
    return Math.floor(ms / 86400000) + "d " + pad(Math.floor((ms % 86400000) / 3600000)) + "h";
  }

  function fetchText(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) { return r.text(); });
  }

  // Replaces a section's content with a fragment, keeping its scroll position.
  function refresh(el, url) {
    if (!el) return null;
    return fetchText(url).then(function (html) {
      var top = el.scrollTop;
      var left = el.scrollLeft;
      el.innerHTML = html;
      el.scrollTop = top;
      el.scrollLeft = left;
      markSelected();
    });
  }

  function markSelected() {
    document.querySelectorAll(".selected").forEach(function (el) { el.classList.remove("selected"); });
    if (selected === null) return;
    var node = nodes.get(selected);
    if (node) node.classList.add("selected");
    timeline.querySelectorAll(".row").forEach(function (row) {
      if (row.getAttribute("data-task-id") === selected) row.classList.add("selected");
    });
  }

  function loadTask() {
    if (selected === null) return null;
    var id = selected;
    panelState = seen[id] || null;
    return fetchText(path + "/task?id=" + encodeURIComponent(id)).then(function (html) {
      if (selected === id) panel.innerHTML = html;
    });
  }

  function select(id) {
    selected = id;
    markSelected();
    history.replaceState(null, "", "#task=" + encodeURIComponent(id));
    var node = nodes.get(id);
    if (node && node.scrollIntoView) node.scrollIntoView({ block: "nearest", inline: "nearest" });
    loadTask();
  }

  document.addEventListener("click", function (e) {
    var target = e.target.closest("#dag .node, #timeline .row, #task-panel a[data-task-id]");
    if (!target) return;
    e.preventDefault();
    select(target.getAttribute("data-task-id"));
  });

  // The graph box follows the work: on load and whenever a task starts running, the first
  // running node is scrolled into view inside the box (not the page), until the user scrolls it.
  var dagBox = document.getElementById("dag");
  var userScrolled = false;
  var ownScroll = null; // [top, left] the box was last scrolled to by this script
  if (dagBox) {
    dagBox.addEventListener("scroll", function () {
      if (ownScroll && Math.abs(dagBox.scrollTop - ownScroll[0]) < 2 &&
          Math.abs(dagBox.scrollLeft - ownScroll[1]) < 2) return;
      userScrolled = true;
    }, { passive: true });
  }

  function revealRunning() {
    if (!dagBox || userScrolled) return;
    var node = dagBox.querySelector('.node[data-status="running"]');
    if (!node) return;
    var box = dagBox.getBoundingClientRect();
    var r = node.getBoundingClientRect();
    var margin = 8;
    function delta(lo, hi, boxLo, boxHi) {
      if (lo < boxLo) return lo - boxLo - margin;
      if (hi > boxHi) return Math.min(hi - boxHi + margin, lo - boxLo - margin);
      return 0;
    }
    var dy = delta(r.top, r.bottom, box.top, box.bottom);
    var dx = delta(r.left, r.right, box.left, box.right);
    if (!dy && !dx) return;
    dagBox.scrollTop += dy;
    dagBox.scrollLeft += dx;
    ownScroll = [dagBox.scrollTop, dagBox.scrollLeft];
  }

  function field(name) { return run.querySelector('[data-field="' + name + '"]'); }

  function update(s) {
    var counts = {};
    var started = false;
    s.tasks.forEach(function (t) {
      counts[t.status] = (counts[t.status] || 0) + 1;
      seen[t.id] = t.status + "/" + t.attempts;
      var node = nodes.get(t.id);
      var was = node && node.getAttribute("data-status");
      if (node && was !== t.status) {
        node.classList.remove("status-" + was);
        node.classList.add("status-" + t.status);
        node.setAttribute("data-status", t.status);
        if (t.status === "running") started = true;
      }
    });
    if (started) revealRunning();
    var status = field("status");
    status.className = "badge status-" + s.status;
    status.textContent = words(s.status);
    field("counts").textContent = ORDER.filter(function (k) { return counts[k]; })
      .map(function (k) { return counts[k] + " " + words(k); }).join(" · ");
    field("cancel").hidden = !s.cancel_requested;
    var error = field("error");
    error.hidden = !s.error;
    error.textContent = s.error || "";
    var took = field("duration");
    if (s.duration_ms !== null && s.duration_ms !== undefined) {
      took.textContent = duration(s.duration_ms);
    } else if (s.started_at_ms) {
      took.textContent = duration(Math.max(0, Date.now() - s.started_at_ms)) + "…";
    }
    var form = run.querySelector(".cancel-form");
    if (form && FINAL[s.status]) form.remove();
    else if (form && s.cancel_requested) form.querySelector("button").disabled = true;
    if (FINAL[s.status]) run.setAttribute("data-final", "true");
  }

  function stale(message) {
    if (!message) {
      if (staleNote) staleNote.remove();
      staleNote = null;
      return;
    }
    if (!staleNote) {
      staleNote = document.createElement("div");
      staleNote.className = "stale";
      document.body.appendChild(staleNote);
    }
    staleNote.textContent = message;
  }

  function poll() {
    fetch("/api" + path, { cache: "no-store" })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error((body.error && body.error.message) || "HTTP " + r.status);
          return body;
        });
      })
      .then(function (s) {
        failures = 0;
        stale(null);
        update(s);
        polls += 1;
        var done = !!FINAL[s.status];
        var logsDue = done || polls % 5 === 0;
        // A large run's timeline is a few hundred KB: redraw it every third poll.
        var timelineDue = done || nodes.size < 300 || polls % 3 === 0;
        // The open task's panel is read again when it changed, or while it runs.
        var state = selected === null ? null : seen[selected];
        var panelDue = state && (state !== panelState || /^(running|retrying)\//.test(state));
        return Promise.all([
          timelineDue ? refresh(timeline, path + "/timeline") : null,
          panelDue ? loadTask() : null,
          logsDue ? refresh(logs, path + "/logs") : null,
        ]).then(function () { if (!done) setTimeout(poll, every); });
      })
      .catch(function (err) {
        failures += 1;
        var wait = Math.min(15000, 1000 * Math.pow(2, failures));
        stale("Live updates paused: " + err.message + ". Retrying in " + wait / 1000 + " s.");
        setTimeout(poll, wait);
      });
  }

  function selectFromHash() {
    var hash = location.hash.match(/^#task=(.+)$/);
    if (hash && decodeURIComponent(hash[1]) !== selected) select(decodeURIComponent(hash[1]));
  }
  window.addEventListener("hashchange", selectFromHash);
  revealRunning();
  selectFromHash();
  refresh(logs, path + "/logs");
  if (run.getAttribute("data-final") !== "true") setTimeout(poll, every);
})();
