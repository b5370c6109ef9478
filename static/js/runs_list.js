/* Runs list: while some run on the page is queued or running, refresh status, stage and
   progress of the rows in place from the API (same page, same filter). */
(function () {
  "use strict";
  const table = document.getElementById("runs-table");
  if (!table || table.dataset.poll !== "1") return;
  const STAGES = { queued: "queued", stage1: "stage 1: meta-training", stage2: "stage 2: accuracy table", done: "done" };

  function fmtTime(iso) {
    const d = new Date(iso);
    return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function update(row, run) {
    const badge = row.querySelector("[data-status-badge]");
    badge.textContent = run.status;
    badge.className = "badge status-" + run.status;
    row.dataset.status = run.status;
    const active = ponas.ACTIVE.includes(run.status);
    let stage = STAGES[run.stage] || run.stage;
    if (run.stage === "stage2" && active) stage += " · layer " + (run.current_layer + 1);
    row.querySelector("[data-stage]").textContent = stage;
    const percent = Math.round(100 * run.progress) + "%";
    row.querySelector("[data-progress-bar]").style.width = percent;
    row.querySelector("[data-progress-text]").textContent = percent;
    row.querySelector(".progress").classList.toggle("live", active);
    if (run.finished) {
      const cell = row.querySelector("[data-finished]");
      if (!cell.querySelector("time")) {
        cell.innerHTML = "";
        const time = document.createElement("time");
        time.dateTime = run.finished;
        time.textContent = fmtTime(run.finished);
        cell.appendChild(time);
      }
    }
  }

  ponas.poll(async function () {
    const { ok, status, data } = await ponas.api(table.dataset.api);
    if (!ok) return status !== 404 && status !== 401 && status !== 403; // gone or signed out: stop
    let active = false;
    for (const run of data.results) {
      const row = table.querySelector('tr[data-run-id="' + run.id + '"]');
      if (row) update(row, run);
      if (ponas.ACTIVE.includes(run.status)) active = true;
    }
    return active;
  }, 2500);
})();
