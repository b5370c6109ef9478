/* Run page: live progress, stage timeline and training curves while the run is active;
   the accuracy-table heatmap once it has succeeded; cancel, resume and delete. */
(function () {
  "use strict";
  const meta = document.getElementById("run-meta");
  if (!meta) return;
  const api = meta.dataset.api;
  let run = ponas.readJson("run-data");
  let stage2 = ponas.readJson("stage2-data") || [];
  const charts = (window.ponasCharts = window.ponasCharts || {});

  const INK = "#374151";
  const GRID = "rgba(17, 24, 39, 0.07)";
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = INK;
  Chart.defaults.borderColor = GRID;
  const percentTicks = { callback: ponas.tickLabels("%") };

  /** Options both training charts share (sized by their box, no animation, one tooltip for
      every series at the hovered x, the legend below), with each chart's tooltip and axes. */
  function seriesOptions(tooltip, scales) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 2 } }, tooltip },
      scales,
    };
  }

  // ---- stage 1: loss and accuracy by epoch --------------------------------------------------

  function stage1Series(metrics) {
    const epochs = (metrics || []).filter((m) => m.stage === "stage1" && m.kind === "epoch");
    epochs.sort((a, b) => a.step - b.step);
    return {
      labels: epochs.map((m) => m.step),
      loss: epochs.map((m) => m.values.train_loss),
      acc: epochs.map((m) => m.values.train_acc),
      step: (metrics || []).find((m) => m.stage === "stage1" && m.kind === "step"),
    };
  }

  function drawStage1() {
    const s = stage1Series(run.metrics);
    document.getElementById("stage1-empty").hidden = s.labels.length > 0;
    const readout = [];
    if (s.labels.length) readout.push("epoch " + s.labels[s.labels.length - 1]);
    if (s.step && run.stage === "stage1" && ponas.ACTIVE.includes(run.status)) {
      readout.push("step " + s.step.step + " · loss " + Number(s.step.values.loss).toFixed(3));
    }
    document.getElementById("stage1-readout").textContent = readout.join(" · ");
    if (charts.stage1) {
      const c = charts.stage1;
      c.data.labels = s.labels;
      c.data.datasets[0].data = s.loss;
      c.data.datasets[1].data = s.acc;
      c.update("none");
      return;
    }
    charts.stage1 = new Chart(document.getElementById("stage1-chart"), {
      type: "line",
      data: {
        labels: s.labels,
        datasets: [
          { label: "train loss", data: s.loss, yAxisID: "y", borderColor: "#4f46e5", backgroundColor: "#4f46e5", tension: 0.25, pointRadius: 2 },
          { label: "train accuracy", data: s.acc, yAxisID: "y1", borderColor: "#10b981", backgroundColor: "#10b981", tension: 0.25, pointRadius: 2 },
        ],
      },
      options: seriesOptions(
        { callbacks: { label: (i) => i.dataset.label + ": " + (i.datasetIndex ? ponas.pct(i.raw) : Number(i.raw).toFixed(4)) } },
        {
          x: { title: { display: true, text: "epoch" }, grid: { display: false } },
          y: { position: "left", title: { display: true, text: "loss" }, beginAtZero: true, ticks: { callback: ponas.tickLabels("") } },
          y1: { position: "right", min: 0, max: 1, ticks: percentTicks, grid: { drawOnChartArea: false }, title: { display: true, text: "accuracy" } },
        },
      ),
    });
  }

  // ---- stage 2: candidates scored per layer ---------------------------------------------------

  function drawStage2() {
    document.getElementById("stage2-empty").hidden = stage2.length > 0;
    const labels = stage2.map((r) => "L" + r.layer);
    const series = {
      best: stage2.map((r) => r.best),
      mean: stage2.map((r) => r.mean),
      worst: stage2.map((r) => r.worst),
      done: stage2.map((r) => (r.total ? r.scored / r.total : 0)),
    };
    if (charts.stage2) {
      const c = charts.stage2;
      c.data.labels = labels;
      ["best", "mean", "worst", "done"].forEach((k, i) => { c.data.datasets[i].data = series[k]; });
      c.update("none");
      return;
    }
    charts.stage2 = new Chart(document.getElementById("stage2-chart"), {
      data: {
        labels,
        datasets: [
          { type: "line", label: "best candidate", data: series.best, borderColor: "#0f766e", backgroundColor: "#0f766e", pointRadius: 3, spanGaps: false },
          { type: "line", label: "mean", data: series.mean, borderColor: "#6366f1", backgroundColor: "#6366f1", borderDash: [5, 4], pointRadius: 2 },
          { type: "line", label: "worst", data: series.worst, borderColor: "#f59e0b", backgroundColor: "#f59e0b", pointRadius: 2 },
          { type: "bar", label: "scored", data: series.done, yAxisID: "y1", backgroundColor: "rgba(17, 24, 39, 0.05)", borderWidth: 0, barPercentage: 0.8 },
        ],
      },
      options: seriesOptions(
        {
          callbacks: {
            label: (i) => {
              if (i.dataset.yAxisID === "y1") {
                const r = stage2[i.dataIndex];
                return "scored " + r.scored + " of " + r.total + (r.chosen ? " · chosen " + r.chosen : "");
              }
              return i.dataset.label + ": " + ponas.pct(i.raw, 2);
            },
          },
        },
        {
          x: { title: { display: true, text: "layer" }, grid: { display: false } },
          y: { ticks: percentTicks, title: { display: true, text: "validation accuracy" } },
          y1: { display: false, min: 0, max: 1 },
        },
      ),
    });
  }

  // ---- live updates -----------------------------------------------------------------------------

  async function refreshFromPage() {
    // Everything that depends on the status (the badge, the timeline, the notices, the
    // buttons) and the per-layer stage-2 summary are rendered by the server: take them from
    // a fresh copy of this page.
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["run-status", "timeline", "run-notices", "run-actions", "stage2-readout", "run-stage-text"]) {
      const here = document.getElementById(id);
      const there = doc.getElementById(id);
      if (here && there) here.innerHTML = there.innerHTML;
    }
    const data = doc.getElementById("stage2-data");
    if (data) {
      stage2 = JSON.parse(data.textContent);
      drawStage2();
    }
  }

  function newestTime(metrics) {
    let newest = "";
    for (const m of metrics || []) if (!newest || Date.parse(m.time) > Date.parse(newest)) newest = m.time;
    return newest;
  }

  function mergeMetrics(held, fresh) {
    // a point of the same stage, kind and step is replaced (a replayed epoch); only the
    // latest step point is kept
    const key = (m) => m.stage + "/" + m.kind + "/" + m.step;
    const merged = new Map((held || []).map((m) => [key(m), m]));
    const step = (fresh || []).find((m) => m.kind === "step");
    if (step) for (const [k, m] of merged) if (m.kind === "step") merged.delete(k);
    for (const m of fresh || []) merged.set(key(m), m);
    return Array.from(merged.values());
  }

  function showProgress() {
    const percent = Math.round(100 * run.progress) + "%";
    document.getElementById("run-progress-bar").style.width = percent;
    document.getElementById("run-progress-text").textContent = percent;
  }

  if (ponas.ACTIVE.includes(run.status)) {
    ponas.poll(async function () {
      // only the metric points stored since the newest one held here
      const since = newestTime(run.metrics);
      const url = since ? api + "?since=" + encodeURIComponent(since) : api;
      const { ok, status, data } = await ponas.api(url);
      if (!ok) return status !== 404 && status !== 401 && status !== 403; // gone or signed out: stop
      const before = run;
      data.metrics = mergeMetrics(before.metrics, data.metrics);
      run = data;
      showProgress();
      drawStage1();
      if (!ponas.ACTIVE.includes(run.status)) {
        location.reload(); // the finished page: heatmap, deploy panel, error
        return false;
      }
      const waitingText = (r) => (r.waiting ? r.waiting.message : "");
      const changed =
        before.status !== run.status ||
        waitingText(before) !== waitingText(run) ||
        before.auto_resumes !== run.auto_resumes ||
        before.stage !== run.stage ||
        before.cancel_requested !== run.cancel_requested ||
        (run.stage === "stage2" && before.progress !== run.progress); // a candidate was scored
      if (changed) await refreshFromPage();
      return true;
    }, 2000);
  }

  // ---- actions ----------------------------------------------------------------------------------

  const actionError = document.getElementById("action-error");
  document.getElementById("run-actions").addEventListener("click", async function (event) {
    const link = event.target.closest("[data-download-json]");
    if (link) {
      // The API answers a browser's navigation with its HTML view: ask for JSON, save a file.
      event.preventDefault();
      const { ok, status, data } = await ponas.api(link.href);
      if (!ok) {
        actionError.textContent = ponas.errorText(data, status);
        actionError.hidden = false;
        return;
      }
      const url = URL.createObjectURL(new Blob([JSON.stringify(data)], { type: "application/json" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = link.dataset.downloadJson;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
      return;
    }
    const button = event.target.closest("[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    if (action === "delete" && !window.confirm("Delete this run, its table and its deployments? This cannot be undone.")) return;
    button.disabled = true;
    actionError.hidden = true;
    const { ok, status, data } =
      action === "delete" ? await ponas.api(api, { method: "DELETE" }) : await ponas.api(api + action + "/", { method: "POST" });
    if (!ok) {
      actionError.textContent = ponas.errorText(data, status);
      actionError.hidden = false;
      button.disabled = false;
      return;
    }
    if (action === "delete") location.assign(meta.dataset.runsUrl);
    else location.reload();
  });

  // ---- the accuracy table heatmap ---------------------------------------------------------------

  const heatmap = {
    mode: "accuracy",
    table: null,
    /** t in [0, 1] of a (layer, column) cell on the scale of the current mode. */
    t(i, j) {
      const s = this.stats;
      const acc = this.table.accuracy[i][j];
      if (acc === null) return null;
      if (this.mode === "loss") return s.lossMax > 0 ? (s.rowMax[i] - acc) / s.lossMax : 0;
      return s.accMax > s.accMin ? (acc - s.accMin) / (s.accMax - s.accMin) : 1;
    },
    colorOf(i, j) { return ponas.color(this.t(i, j), this.mode); },
    inkOf(i, j) { return ponas.ink(this.t(i, j), this.mode); },
  };
  window.ponasHeatmap = heatmap;

  // Layers whose best and second-best entries are within noise (listed by the page under the
  // heatmap, computed by ponas): their row label gets a "≈".
  const closeCalls = new Set(Array.from(document.querySelectorAll("#close-calls li[data-layer]")).map((li) => Number(li.dataset.layer)));

  function layerLabels(table) {
    return table.accuracy.map((_, i) => {
      const r = stage2[i];
      return "L" + i + (r && r.channels ? "  " + r.channels + "ch" + (r.stride > 1 ? " /" + r.stride : "") : "") + (closeCalls.has(i) ? " ≈" : "");
    });
  }

  function legend() {
    const s = heatmap.stats;
    document.getElementById("legend-gradient").style.background = ponas.gradient(heatmap.mode);
    if (heatmap.mode === "loss") {
      document.getElementById("legend-low").textContent = "0 (best of its layer)";
      document.getElementById("legend-high").textContent = "−" + (100 * s.lossMax).toFixed(1) + " pts";
    } else {
      document.getElementById("legend-low").textContent = ponas.pct(s.accMin);
      document.getElementById("legend-high").textContent = ponas.pct(s.accMax);
    }
  }

  // Accuracy in the cell when there is room for it.
  const cellText = {
    id: "cellText",
    afterDatasetsDraw(chart) {
      const ctx = chart.ctx;
      const elements = chart.getDatasetMeta(0).data;
      ctx.save();
      ctx.font = "600 " + (elements.length && elements[0].width < 34 ? 9.5 : 10.5) + "px " + Chart.defaults.font.family;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (const el of elements) {
        const { x, y, width, height } = el.getProps(["x", "y", "width", "height"], true);
        const raw = el.$context && el.$context.raw;
        if (!raw || width < 27 || height < 14) continue;
        ctx.fillStyle = heatmap.inkOf(raw.i, raw.j);
        const value = heatmap.mode === "loss" ? (raw.loss > 0 ? "−" + (100 * raw.loss).toFixed(1) : "0") : (100 * raw.acc).toFixed(1);
        ctx.fillText(value, x + width / 2, y + height / 2);
      }
      ctx.restore();
    },
    afterRender(chart) {
      chart.canvas.dataset.drawn = "1";
    },
  };

  function drawHeatmap(table) {
    const L = table.accuracy.length;
    const C = table.candidates.length;
    const rows = layerLabels(table);
    const rowMax = table.accuracy.map((r) => Math.max(...r.filter((v) => v !== null)));
    const cells = [];
    let accMin = Infinity, accMax = -Infinity, lossMax = 0;
    table.accuracy.forEach((row, i) => row.forEach((acc, j) => {
      if (acc === null) return; // not allowed at this layer: left blank
      const cell = {
        x: table.candidates[j], y: rows[i], i, j, acc, loss: rowMax[i] - acc,
        macs: table.cost.macs[i][j], params: table.cost.params[i][j],
        latency: table.cost.latency_ms ? table.cost.latency_ms[i][j] : null,
        chosen: table.path[i] === table.candidates[j],
        stderr: table.stderr ? table.stderr[i][j] : null,
      };
      accMin = Math.min(accMin, acc);
      accMax = Math.max(accMax, acc);
      lossMax = Math.max(lossMax, cell.loss);
      cells.push(cell);
    }));
    heatmap.table = table;
    heatmap.stats = { rowMax, accMin, accMax, lossMax };

    const canvas = document.getElementById("heatmap");
    const box = document.getElementById("heatmap-box");
    box.style.height = Math.max(220, L * 30 + 80) + "px";
    box.style.minWidth = C * 30 + 70 + "px";
    Object.assign(canvas.dataset, { rows: L, cols: C, cells: cells.length, layers: JSON.stringify(rows) });

    charts.heatmap = new Chart(canvas, {
      type: "matrix",
      data: {
        datasets: [{
          label: "accuracy table",
          data: cells,
          backgroundColor: (c) => (c.raw ? heatmap.colorOf(c.raw.i, c.raw.j) : "transparent"),
          borderColor: (c) => (c.raw && c.raw.chosen ? "#111827" : "#ffffff"),
          borderWidth: (c) => (c.raw && c.raw.chosen ? 3 : 1),
          width: ({ chart }) => ((chart.chartArea || {}).width || 0) / C - 1,
          height: ({ chart }) => ((chart.chartArea || {}).height || 0) / L - 1,
        }],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        layout: { padding: { right: 4 } },
        plugins: {
          legend: { display: false },
          tooltip: {
            displayColors: false,
            callbacks: {
              title: (items) => "layer " + items[0].raw.i + " · " + items[0].raw.x + (items[0].raw.chosen ? "  (chosen)" : ""),
              label: (item) => {
                const r = item.raw;
                const lines = [
                  "accuracy " + ponas.pct(r.acc, 2) + (r.stderr !== null ? " ± " + (100 * r.stderr).toFixed(2) : "") + (r.loss > 0 ? "  (−" + (100 * r.loss).toFixed(2) + " pts vs best)" : "  (best of layer)"),
                  ponas.formatCost("macs", r.macs) + " · " + ponas.formatCost("params", r.params),
                ];
                if (r.latency !== null) lines.push(ponas.formatCost("latency_ms", r.latency));
                if (closeCalls.has(r.i)) lines.push("this layer's two best blocks are within noise");
                return lines;
              },
            },
          },
        },
        scales: {
          x: { type: "category", labels: table.candidates, offset: true, position: "top", grid: { display: false }, border: { display: false }, ticks: { maxRotation: 60, autoSkip: false } },
          // layer 0 (the input side) at the top; short labels when the chart is narrow
          y: {
            type: "category", labels: rows, offset: true, reverse: false, grid: { display: false }, border: { display: false },
            ticks: { autoSkip: false, callback(value, index) { return this.chart.width < 520 ? "L" + index + (closeCalls.has(index) ? " ≈" : "") : rows[index]; } },
          },
        },
      },
      plugins: [cellText],
    });
    legend();
  }

  document.querySelectorAll("#heatmap-card [data-mode]").forEach((button) => {
    button.addEventListener("click", () => {
      heatmap.mode = button.dataset.mode;
      document.querySelectorAll("#heatmap-card [data-mode]").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      if (charts.heatmap) charts.heatmap.update("none");
      legend();
      document.dispatchEvent(new CustomEvent("ponas:mode", { detail: heatmap.mode }));
    });
  });

  drawStage1();
  drawStage2();
  if (meta.dataset.hasTable === "1") {
    ponas.api(api + "table/").then(({ ok, status, data }) => {
      if (!ok) {
        actionError.textContent = "The accuracy table could not be loaded: " + ponas.errorText(data, status);
        actionError.hidden = false;
        return;
      }
      drawHeatmap(data);
      document.dispatchEvent(new CustomEvent("ponas:table", { detail: data }));
    });
  }
})();
