/* Deployment page: blocks coloured like the run's heatmap; refreshes itself while building. */
(function () {
  "use strict";
  document.querySelectorAll("#arch-row li[data-t]").forEach((li) => {
    const t = parseFloat(li.dataset.t);
    if (!Number.isFinite(t)) return;
    li.style.background = ponas.color(t, "accuracy");
    li.style.color = ponas.ink(t, "accuracy");
  });
  const meta = document.getElementById("deployment-meta");
  const deployment = ponas.readJson("deployment-data");
  if (!meta || !deployment || !ponas.ACTIVE.includes(deployment.status)) return;
  ponas.poll(async function () {
    const { ok, status, data } = await ponas.api(meta.dataset.api);
    if (!ok) return status !== 404 && status !== 401 && status !== 403; // gone or signed out: stop
    if (!ponas.ACTIVE.includes(data.status)) {
      location.reload();
      return false;
    }
    return true;
  }, 2000);
})();
