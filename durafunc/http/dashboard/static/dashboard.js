// durafunc dashboard: local times, live refresh of the marked regions, status counts. No dependencies.
"use strict";
(function () {
  const pad = (n, w) => String(n).padStart(w || 2, "0");

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) continue;
      let text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
                 `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
      if (el.dataset.millis) text += "." + pad(d.getMilliseconds(), 3);
      el.textContent = text;
    }
  }

  // open <details> keep their state across a refresh (by data-key)
  function openKeys(root) {
    return new Set([...root.querySelectorAll("details[data-key][open]")].map(d => d.dataset.key));
  }
  function closedKeys(root) {
    return new Set([...root.querySelectorAll("details[data-key]:not([open])")].map(d => d.dataset.key));
  }

  function liveToggle() {
    const box = document.getElementById("live");
    if (!box) return () => true;
    box.checked = localStorage.getItem("durafunc.live") !== "off";
    box.addEventListener("change", () => localStorage.setItem("durafunc.live", box.checked ? "on" : "off"));
    return () => box.checked;
  }

  function startLive(region, isOn) {
    const url = region.dataset.liveUrl;
    const every = parseInt(region.dataset.interval || "2000", 10);
    let busy = false;
    async function tick() {
      if (busy || document.hidden || !isOn() || region.dataset.final === "1") return;
      busy = true;
      try {
        const r = await fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}});
        if (r.ok) {
          const html = await r.text();
          // from here on nothing awaits: what the user opened or ticked until now is kept
          const open = openKeys(region), closed = closedKeys(region);
          const episodes = document.getElementById("show-episodes");
          region.innerHTML = html;
          for (const d of region.querySelectorAll("details[data-key]")) {
            if (open.has(d.dataset.key)) d.open = true;
            else if (closed.has(d.dataset.key)) d.open = false;
          }
          if (region.querySelector("[data-final='1']")) region.dataset.final = "1";
          localTimes(region);
          wireEpisodes(episodes && episodes.checked);
          const stamp = document.getElementById("refreshed");
          if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
          document.dispatchEvent(new CustomEvent("durafunc:refreshed"));
        }
      } catch (e) { /* the host may be restarting: try again on the next tick */ }
      busy = false;
    }
    setInterval(tick, every);
  }

  async function loadCounts(box) {
    try {
      const r = await fetch(box.dataset.url, {credentials: "same-origin"});
      if (!r.ok) return;
      const data = await r.json();
      for (const el of box.querySelectorAll("[data-count]")) {
        const k = el.dataset.count;
        const n = k === "total" ? data.total : (data.counts[k] || 0);
        el.textContent = n.toLocaleString() + (data.complete ? "" : "+");
      }
    } catch (e) { /* keep the previous figures */ }
  }

  function wireEpisodes(checked) {
    const box = document.getElementById("show-episodes");
    const table = document.getElementById("events");
    if (!box || !table) return;
    if (checked !== undefined) box.checked = checked;
    table.classList.toggle("hide-episodes", !box.checked);
    box.onchange = () => table.classList.toggle("hide-episodes", !box.checked);
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    const isOn = liveToggle();
    for (const region of document.querySelectorAll("[data-live-url]")) startLive(region, isOn);
    const counts = document.getElementById("counts");
    if (counts) {
      loadCounts(counts);
      setInterval(() => { if (!document.hidden && isOn()) loadCounts(counts); }, 5000);
    }
    wireEpisodes();
    // one action panel open at a time
    const actions = [...document.querySelectorAll("details.action")];
    for (const d of actions) d.addEventListener("toggle", () => {
      if (d.open) for (const o of actions) if (o !== d) o.open = false;
    });
  });
})();
