// dwr dashboard: keeps the page live from /ui/events, follows a job's log, and asks before
// an abort. The pages work without it (read-only views, a confirmation page for aborts).
"use strict";
(function () {
  const body = document.body;
  const status = document.getElementById("live-status");
  const say = (text) => { if (status) status.textContent = text; };

  // Forms that ask first: without this script the server shows a confirmation page.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) { event.preventDefault(); return; }
    const confirmed = form.querySelector('input[name="confirmed"]');
    if (confirmed) confirmed.value = "yes";
  });

  // Live regions: re-read the page and swap the region when something changed.
  const regionId = body.getAttribute("data-live");
  let pending = null;
  let again = false;
  const busy = (region) => {
    const active = document.activeElement;
    return active && region.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  };
  const refresh = () => {
    if (!regionId) return;
    if (pending) { again = true; return; }
    pending = fetch(window.location.href, { headers: { "X-Requested-With": "dwr-ui" } })
      .then((r) => r.ok ? r.text() : null)
      .then((html) => {
        if (!html) return;
        const region = document.getElementById(regionId);
        if (!region || busy(region)) return;
        const next = new DOMParser().parseFromString(html, "text/html").getElementById(regionId);
        if (next) region.innerHTML = next.innerHTML;
      })
      .catch(() => {})
      .finally(() => {
        pending = null;
        if (again) { again = false; setTimeout(refresh, 250); }
      });
  };
  let timer = null;
  const soon = () => { if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, 200); };

  const jobRegion = document.getElementById("job-live");
  const jobId = jobRegion ? jobRegion.getAttribute("data-job") : null;
  if (regionId && window.EventSource) {
    const source = new EventSource(jobId ? "/ui/events?job=" + encodeURIComponent(jobId) : "/ui/events");
    source.onopen = () => say("Live");
    source.onerror = () => say("Reconnecting…");
    for (const kind of ["job", "executor", "reset"]) {
      source.addEventListener(kind, () => { soon(); if (jobId) pollLog(); });
    }
  }

  // A pending job's reason comes from the scheduler's passes, not from a change: re-read it.
  setInterval(() => {
    const state = document.getElementById("job-status");
    if (state && state.getAttribute("data-status") === "pending") soon();
  }, 3000);

  // A job's log: follow (poll the lines after the last one shown), pause, jump to the end.
  const log = document.getElementById("log");
  if (!log || !jobId) return;
  const followButton = document.getElementById("log-follow");
  const endButton = document.getElementById("log-end");
  const logState = document.getElementById("log-state");
  let following = true;
  let ended = jobRegion.getAttribute("data-terminal") === "true";
  let next = Number(log.getAttribute("data-next") || "0");
  let polling = false;
  followButton.hidden = false;
  endButton.hidden = false;
  const toEnd = () => { log.scrollTop = log.scrollHeight; };
  followButton.addEventListener("click", () => {
    following = !following;
    followButton.textContent = following ? "Pause" : "Follow";
    followButton.setAttribute("aria-pressed", String(following));
    if (following) { toEnd(); pollLog(); }
  });
  endButton.addEventListener("click", toEnd);
  function pollLog() {
    if (polling || !following) return;
    polling = true;
    fetch("/ui/jobs/" + encodeURIComponent(jobId) + "/lines?from=" + next)
      .then((r) => r.ok ? r.json() : null)
      .then((answer) => {
        if (!answer) return;
        if (answer.lines.length) {
          log.append(document.createTextNode(answer.lines.join("\n") + "\n"));
          next = answer.from + answer.lines.length;
          if (following) toEnd();
        }
        ended = answer.ended;
        if (logState) logState.textContent = ended ? "The job has ended." : (following ? "Following" : "Paused");
      })
      .catch(() => {})
      .finally(() => { polling = false; });
  }
  toEnd();
  pollLog();
  setInterval(() => { if (!ended) pollLog(); }, 1000);
})();
