// Live parts: every element with data-live="URL" is replaced, every data-refresh-s seconds
// (times data-live-every), with the HTML fragment the console serves at URL. No page reload;
// paused while the tab is hidden. Times in data-time (epoch ms) are shown in local time.
"use strict";

(function () {
  const body = document.body;
  const refreshMs = Math.max(200, 1000 * Number(body.dataset.refreshS || "5"));
  const status = document.getElementById("live-status");
  const FORMATS = {
    time: { hour: "2-digit", minute: "2-digit", second: "2-digit" },
    hm: { hour: "2-digit", minute: "2-digit" },
    dhm: { weekday: "short", hour: "2-digit", minute: "2-digit" },
    datetime: { dateStyle: "short", timeStyle: "medium" },
  };

  function showTimes(root) {
    for (const el of root.querySelectorAll("[data-time]")) {
      const ms = Number(el.getAttribute("data-time"));
      if (!ms) continue;
      const when = new Date(ms);
      el.textContent = when.toLocaleString([], FORMATS[el.getAttribute("data-fmt")] || FORMATS.datetime);
      el.setAttribute("title", when.toISOString());
    }
  }

  function setStatus(ok, text) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("offline", !ok);
  }

  async function update(el) {
    // location.origin: a page opened as http://user:pass@host/ must not put credentials in URLs
    const url = new URL(el.dataset.live, window.location.origin);
    const answer = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    const html = await answer.text();
    el.innerHTML = html; // server-rendered, escaped by the console's templates
    showTimes(el);
    el.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
  }

  function start(el) {
    const every = Math.max(1, Number(el.dataset.liveEvery || "1"));
    let first = el.children.length === 1 && el.querySelector(".banner") !== null;
    async function tick() {
      if (!document.hidden) {
        try {
          await update(el);
          setStatus(true, "live · " + new Date().toLocaleTimeString());
        } catch (err) {
          setStatus(false, "offline · retrying");
        }
      }
      first = false;
      window.setTimeout(tick, refreshMs * every);
    }
    window.setTimeout(tick, first ? 0 : refreshMs * every);
  }

  showTimes(document);
  for (const el of document.querySelectorAll("[data-live]")) start(el);
})();
