// agentopt watch: live updates. The pages are complete without this script; it polls the
// run's status (same origin only, per the CSP) and, when the store grew, fetches the page
// again and swaps in its #live section. Parsed with DOMParser, so nothing in it executes.
"use strict";
(function () {
  const statusUrl = document.body.dataset.status;
  if (!statusUrl) return;
  const PERIOD_MS = 2000;
  let lastKey = null;
  let busy = false;

  function keyOf(data) {
    if (Array.isArray(data)) return data.map((r) => `${r.folder}:${r.programs}:${r.state}`).join("|");
    return `${data.programs}:${data.next_iteration}:${data.state}:${data.rejected_replies}:${data.indexing}`;
  }

  function setState(text, cls) {
    const el = document.getElementById("live-state");
    if (!el) return;
    el.textContent = text;
    el.className = cls || "";
  }

  async function refreshPage() {
    const resp = await fetch(window.location.href, { cache: "no-store", credentials: "same-origin" });
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.getElementById("live");
    const live = document.getElementById("live");
    if (!fresh || !live) return;
    live.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.adoptNode(n)));
  }

  async function tick() {
    if (busy) return;
    busy = true;
    try {
      const resp = await fetch(statusUrl, { cache: "no-store", credentials: "same-origin" });
      if (!resp.ok) throw new Error(String(resp.status));
      const data = await resp.json();
      const key = keyOf(data);
      // The first poll refreshes too: what changed between rendering this page and that poll
      // (a run started meanwhile) would otherwise stay unseen until the next change.
      if (key !== lastKey) await refreshPage();
      lastKey = key;
      if (!Array.isArray(data)) {
        document.querySelectorAll('[data-field="iteration"]').forEach((el) => { el.textContent = String(data.next_iteration); });
        setState(data.state === "running" ? " ● live" : ` ${data.state}`, data.state);
      } else {
        setState(" ● live", "running");
      }
    } catch (err) {
      setState(" ○ server unreachable", "stopped");
    } finally {
      busy = false;
    }
  }

  tick();
  setInterval(tick, PERIOD_MS);
})();
