// The device list's search box: rows are filtered as you type, and the live part keeps the
// filter (its URL carries q). Without script, the form asks the server instead.
"use strict";

(function () {
  const input = document.getElementById("q");
  const live = document.getElementById("devices");
  if (!input || !live) return;

  function apply() {
    const typed = input.value.replace(/[^0-9A-Za-z _.\-]/g, "").trim();
    const wanted = typed.toUpperCase();
    for (const row of live.querySelectorAll("tr[data-device]")) {
      row.hidden = wanted !== "" && !row.dataset.device.includes(wanted);
    }
    const url = new URL(live.dataset.live, window.location.origin);
    url.searchParams.set("q", typed);
    live.dataset.live = url.pathname + url.search;
    const page = new URL(window.location.href);
    page.searchParams.set("q", typed);
    window.history.replaceState(null, "", page.pathname + page.search);
  }

  input.addEventListener("input", apply);
  live.addEventListener("live:updated", apply);
})();
