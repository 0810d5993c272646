// Progressive enhancement only: every page works without this file.
"use strict";

// Asks before destructive actions (forms marked data-confirm).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// The audit log's live tail: every few seconds while the page is visible, the
// events of the same filters newer than the newest shown are put on top of the
// table. Without this script the "Newer events" link reloads the page instead.
(() => {
  const rows = document.querySelector("tbody[data-tail]");
  if (!rows) return;
  const EVERY_MS = 3000;
  // Past this many new rows the page stops following: reload to go on.
  const MAX_NEW = 500;
  const status = document.getElementById("tail-status");
  const say = (text) => {
    if (status) status.textContent = text;
  };
  const url = new URL(rows.dataset.tail, window.location.href);
  let added = 0;
  let timer;
  let busy = false;
  let stopped = false;

  const stop = (why) => {
    stopped = true;
    say(why);
  };

  async function poll() {
    timer = undefined;
    busy = true;
    try {
      const r = await fetch(url, {
        credentials: "same-origin",
        redirect: "manual",
        headers: { accept: "text/html" },
      });
      if (r.status === 409) return stop("More new events than fit: use Newer events.");
      if (r.status !== 200 && r.status !== 204) return stop("Live updates stopped: reload the page.");
      const newest = r.headers.get("x-hawser-newest");
      if (newest) url.searchParams.set("after", newest);
      if (r.status === 200) {
        const fresh = document.createElement("template");
        fresh.innerHTML = await r.text();
        const n = fresh.content.querySelectorAll("tr").length;
        rows.prepend(fresh.content);
        rows.closest(".table-wrap")?.removeAttribute("hidden");
        document.getElementById("no-events")?.setAttribute("hidden", "");
        added += n;
        say(`${n} new ${n === 1 ? "event" : "events"} at ${new Date().toLocaleTimeString()}.`);
        if (added >= MAX_NEW) return stop("Many new events: reload the page to keep following.");
      }
    } catch {
      // A network blip: the next poll asks again from the same row.
    } finally {
      busy = false;
    }
    schedule();
  }

  function schedule() {
    if (!stopped && !busy && timer === undefined && !document.hidden) {
      timer = setTimeout(poll, EVERY_MS);
    }
  }

  document.addEventListener("visibilitychange", schedule);
  say("Following new events.");
  schedule();
})();
