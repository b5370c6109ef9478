/* Deploy panel of a succeeded run: the Pareto frontier, a budget slider and budget inputs;
   every budget change asks `preview` for the best network within it (debounced, answers to
   older budgets ignored); "Build" creates a deployment. A device profile (a worker's latency
   table) adds latency: the frontier, slider and budgets in ms on that device. */
(function () {
  "use strict";
  const meta = document.getElementById("run-meta");
  const panel = document.getElementById("deploy-panel");
  if (!meta || !panel) return;
  const api = meta.dataset.api;
  const charts = (window.ponasCharts = window.ponasCharts || {});
  const slider = document.getElementById("budget-slider");
  const kindSelect = document.getElementById("pareto-kind");
  const inputs = {};
  panel.querySelectorAll("input[data-kind]").forEach((el) => { inputs[el.dataset.kind] = el; });
  const budgetError = document.getElementById("budget-error");
  const archRow = document.getElementById("arch-row");
  const LABELS = { macs: "MACs", params: "parameters", latency_ms: "latency (ms)" };

  const profileSelect = document.getElementById("latency-profile");
  const profileStatus = document.getElementById("profile-status");
  let table = null;
  let profile = ""; // the chosen device profile's id, "" for none
  let kind = "macs";
  let points = [];
  let budget = null;
  let current = null;
  let seq = 0; // the number of the latest preview request: only its answer is shown
  let timer = null;

  // ---- the frontier chart -----------------------------------------------------------------

  const budgetLine = {
    id: "budgetLine",
    beforeDatasetsDraw(chart) {
      if (budget === null) return;
      const { ctx, chartArea: area, scales } = chart;
      const x = scales.x.getPixelForValue(budget);
      if (!Number.isFinite(x)) return;
      ctx.save();
      ctx.fillStyle = "rgba(17, 24, 39, 0.05)";
      if (x < area.right) ctx.fillRect(Math.max(x, area.left), area.top, area.right - Math.max(x, area.left), area.bottom - area.top);
      ctx.strokeStyle = "#ef4444";
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(x, area.top);
      ctx.lineTo(x, area.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#b91c1c";
      ctx.font = "600 11px " + Chart.defaults.font.family;
      const text = "budget " + ponas.formatCost(kind, budget);
      const width = ctx.measureText(text).width;
      ctx.textAlign = x + width + 8 > area.right ? "right" : "left";
      // the frontier climbs to the right: the label goes where the points are not
      const y = x > (area.left + area.right) / 2 ? area.bottom - 8 : area.top + 12;
      ctx.fillText(text, ctx.textAlign === "right" ? x - 6 : x + 6, y);
      ctx.restore();
    },
  };

  function drawPareto() {
    const data = points.map((p, i) => ({ x: p.cost[kind], y: p.score, i }));
    const canvas = document.getElementById("pareto-chart");
    canvas.dataset.points = String(points.length);
    if (charts.pareto) {
      const c = charts.pareto;
      c.data.datasets[0].data = data;
      c.options.scales.x.title.text = LABELS[kind];
      c.update("none");
      return;
    }
    charts.pareto = new Chart(canvas, {
      type: "scatter",
      data: {
        datasets: [
          { label: "Pareto frontier", data, showLine: true, stepped: "after", borderColor: "#6366f1", backgroundColor: "#6366f1", borderWidth: 2, pointRadius: 3, pointHoverRadius: 6 },
          { label: "chosen", data: [], pointRadius: 9, pointHoverRadius: 9, backgroundColor: "rgba(253, 231, 37, 0.9)", borderColor: "#111827", borderWidth: 2.5 },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            filter: (item) => item.datasetIndex === 0,
            callbacks: {
              title: (items) => ponas.formatCost(kind, items[0].raw.x),
              label: (item) => {
                const p = points[item.raw.i];
                const err = p.score_stderr !== null && p.score_stderr !== undefined ? " ± " + p.score_stderr.toFixed(3) : "";
                return ["predicted score " + p.score.toFixed(3) + err, ponas.formatCost("macs", p.cost.macs) + " · " + ponas.formatCost("params", p.cost.params), "click to choose"];
              },
            },
          },
        },
        scales: {
          x: { type: "linear", title: { display: true, text: LABELS[kind] }, ticks: { callback: ponas.tickLabels("si") } },
          y: { title: { display: true, text: "predicted score (Σ layer accuracy)" }, ticks: { callback: ponas.tickLabels("") } },
        },
        onClick(event, elements) {
          const el = elements.find((e) => e.datasetIndex === 0);
          if (!el) return;
          slider.value = String(el.index);
          fromSlider(true);
        },
      },
      plugins: [budgetLine],
    });
  }

  async function loadFrontier() {
    const q = new URLSearchParams({ cost: kind });
    if (profile) q.set("profile", profile);
    const { ok, status, data } = await ponas.api(api + "pareto/?" + q.toString());
    if (!ok) {
      showError(ponas.errorText(data, status));
      return;
    }
    points = data.points;
    slider.min = "0";
    slider.max = String(Math.max(0, points.length - 1));
    slider.value = slider.max;
    drawPareto();
    fromSlider(true);
  }

  // ---- budgets ------------------------------------------------------------------------------

  const SUFFIX = { "": 1, k: 1e3, m: 1e6, g: 1e9 };
  function parseBudget(text) {
    const m = /^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([kmg]?)\s*$/i.exec(text || "");
    return m ? parseFloat(m[1]) * SUFFIX[m[2].toLowerCase()] : null;
  }

  /** A budget as people type it, without rounding: 128704 -> "128.704K", 2e6 -> "2M". */
  function exactBudget(value) {
    if (Number.isInteger(value)) {
      for (const [div, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "K"]]) {
        const text = String(value / div);
        if (value >= div && !/e/i.test(text) && Math.round(parseFloat(text) * div) === value) return text + suffix;
      }
    }
    return String(value);
  }

  function fromSlider(immediate) {
    const p = points[Number(slider.value)];
    if (!p) return;
    budget = p.cost[kind];
    // the exact cost of the frontier point: the budget admits that network and no costlier one
    inputs[kind].value = exactBudget(budget);
    slider.setAttribute("aria-valuetext", ponas.formatCost(kind, budget));
    if (charts.pareto) charts.pareto.update("none");
    schedule(immediate);
  }

  function fromInput(el) {
    if (el.dataset.kind === kind) {
      budget = parseBudget(el.value);
      if (budget !== null && kind !== "latency_ms") budget = Math.round(budget);
      if (budget !== null) {
        let index = -1;
        points.forEach((p, i) => { if (p.cost[kind] <= budget) index = i; });
        if (index >= 0) slider.value = String(index);
      }
      if (charts.pareto) charts.pareto.update("none");
    }
    schedule(false);
  }

  function query() {
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) {
      if (!el.closest("[hidden]") && el.value.trim()) q.set("max_" + k, el.value.trim());
    }
    if (profile) q.set("profile", profile);
    return q;
  }

  function schedule(immediate) {
    clearTimeout(timer);
    timer = setTimeout(preview, immediate ? 0 : 80);
  }

  async function preview() {
    const mine = ++seq;
    panel.classList.add("loading");
    const { ok, status, data } = await ponas.api(api + "preview/?" + query().toString());
    if (mine !== seq) return; // an answer for an older budget; a newer request is on its way
    panel.classList.remove("loading");
    if (!ok) {
      showError(ponas.errorText(data, status));
      panel.classList.add("stale");
      return;
    }
    showError("");
    panel.classList.remove("stale");
    current = data;
    render();
  }

  function showError(text) {
    budgetError.textContent = text;
    budgetError.hidden = !text;
  }

  // ---- the chosen network -------------------------------------------------------------------

  function render() {
    if (!current || !table) return;
    const sel = current;
    const L = sel.choices.length;
    // the score's standard error, and the same per layer (the mean's error is the sum's / L)
    const err = sel.score_stderr;
    const known = err !== null && err !== undefined;
    document.getElementById("sel-score").textContent = sel.score.toFixed(3) + (known ? " ± " + err.toFixed(3) : "");
    document.getElementById("sel-mean").textContent = "mean " + ponas.pct(sel.score / L) + (known ? " ± " + (100 * err / L).toFixed(2) : "") + " per layer · loss " + sel.loss.toFixed(3);
    document.getElementById("sel-score-note").textContent =
      "Sum of " + L + " table entries" + (known ? " ± its standard error" : " (their uncertainty was not recorded)") +
      ": a score that ranks this table's networks, not a test accuracy (building the network measures that).";
    document.getElementById("sel-macs").textContent = ponas.formatCost("macs", sel.cost.macs);
    document.getElementById("sel-params").textContent = ponas.formatCost("params", sel.cost.params);
    if (sel.cost.latency_ms !== undefined) document.getElementById("sel-latency").textContent = ponas.formatCost("latency_ms", sel.cost.latency_ms);
    const heatmap = window.ponasHeatmap;
    archRow.innerHTML = "";
    sel.choices.forEach((name, i) => {
      const j = table.candidates.indexOf(name);
      const li = document.createElement("li");
      const acc = table.accuracy[i][j];
      li.title = "layer " + i + ": " + name + " · accuracy " + ponas.pct(acc, 2) + " · " +
        ponas.formatCost("macs", table.cost.macs[i][j]) + " · " + ponas.formatCost("params", table.cost.params[i][j]);
      if (heatmap && heatmap.table) {
        li.style.background = heatmap.colorOf(i, j);
        li.style.color = heatmap.inkOf(i, j);
      }
      const layer = document.createElement("span");
      layer.className = "arch-layer";
      layer.textContent = String(i + 1);
      const block = document.createElement("span");
      block.className = "arch-name";
      block.textContent = name;
      li.append(layer, block);
      archRow.appendChild(li);
    });
    archRow.dataset.choices = JSON.stringify(sel.choices);
    if (charts.pareto) {
      const hit = points.findIndex((p) => p.choices.join() === sel.choices.join());
      charts.pareto.data.datasets[1].data = hit >= 0 ? [{ x: points[hit].cost[kind], y: points[hit].score }] : [{ x: sel.cost[kind], y: sel.score }];
      charts.pareto.update("none");
    }
  }

  // ---- build ----------------------------------------------------------------------------------

  document.getElementById("build-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const error = document.getElementById("build-error");
    const button = document.getElementById("build-button");
    const body = {
      run: Number(meta.dataset.runId),
      finetune_epochs: Number(document.getElementById("finetune-epochs").value || 0),
      formats: Array.from(this.querySelectorAll('input[name="formats"]:checked')).map((el) => el.value),
    };
    for (const [k, v] of query().entries()) body[k] = k === "profile" ? Number(v) : v;
    button.disabled = true;
    button.textContent = "Building…";
    error.hidden = true;
    const { ok, status, data } = await ponas.api(meta.dataset.deploymentsApi, { method: "POST", body });
    if (!ok) {
      error.textContent = ponas.errorText(data, status);
      error.hidden = false;
      button.disabled = false;
      button.textContent = "Build this network";
      return;
    }
    location.assign(meta.dataset.deploymentUrl.replace(/\/0\/$/, "/" + data.id + "/"));
  });

  // ---- device profiles (latency) ----------------------------------------------------------------

  function hasLatency() {
    return Boolean(profile || (table && table.cost.latency_ms));
  }

  function showLatency() {
    const on = hasLatency();
    let option = Array.from(kindSelect.options).find((o) => o.value === "latency_ms");
    if (on && !option) kindSelect.add(new Option("Latency", "latency_ms"));
    if (!on && option) option.remove();
    document.getElementById("budget-latency-wrap").hidden = !on;
    document.getElementById("sel-latency-wrap").hidden = !on;
    if (!on) inputs.latency_ms.value = "";
  }

  async function loadProfiles() {
    const { ok, data } = await ponas.api(api + "profiles/");
    if (!ok) return false;
    const known = new Set(Array.from(profileSelect.options).map((o) => o.value));
    data.filter((p) => p.status === "succeeded" && !known.has(String(p.id))).forEach((p) => {
      profileSelect.add(new Option(p.device + " (profile " + p.id + ")", String(p.id)));
    });
    const busy = data.filter((p) => ponas.ACTIVE.includes(p.status));
    const failed = data.filter((p) => p.status === "failed").pop();
    profileStatus.textContent = busy.length
      ? "timing the blocks on a " + busy[0].queue + " worker…"
      : failed ? "profile " + failed.id + " failed: " + failed.error : "";
    // the profile being measured can be cancelled (it frees its place in the quota)
    cancelButton.hidden = !busy.length;
    cancelButton.dataset.profile = busy.length ? String(busy[0].id) : "";
    return busy.length > 0; // poll while one is being measured
  }

  const cancelButton = document.getElementById("profile-cancel");
  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    const url = api + "profiles/" + cancelButton.dataset.profile + "/cancel/";
    const { ok, status, data } = await ponas.api(url, { method: "POST" });
    cancelButton.disabled = false;
    if (!ok) {
      profileStatus.textContent = ponas.errorText(data, status);
      return;
    }
    await loadProfiles();
  });

  profileSelect.addEventListener("change", () => {
    profile = profileSelect.value;
    showLatency();
    if (profile) kind = "latency_ms";
    else if (kind === "latency_ms" && !hasLatency()) kind = "macs";
    kindSelect.value = kind;
    Object.values(inputs).forEach((el) => { el.value = ""; });
    loadFrontier();
  });

  document.getElementById("profile-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const button = document.getElementById("profile-button");
    button.disabled = true;
    const queue = document.getElementById("profile-queue").value;
    const { ok, status, data } = await ponas.api(api + "profiles/", { method: "POST", body: { queue } });
    button.disabled = false;
    if (!ok) {
      profileStatus.textContent = ponas.errorText(data, status);
      return;
    }
    profileStatus.textContent = "timing the blocks on a " + data.queue + " worker…";
    ponas.poll(loadProfiles, 2000);
  });

  // ---- wiring -----------------------------------------------------------------------------------

  slider.addEventListener("input", () => fromSlider(false));
  kindSelect.addEventListener("change", () => {
    kind = kindSelect.value;
    Object.values(inputs).forEach((el) => { el.value = ""; });
    loadFrontier();
  });
  Object.values(inputs).forEach((el) => el.addEventListener("input", () => fromInput(el)));
  document.addEventListener("ponas:mode", render);
  document.addEventListener("ponas:table", (event) => {
    table = event.detail;
    showLatency();
    loadFrontier();
    loadProfiles().then((busy) => { if (busy) ponas.poll(loadProfiles, 2000); });
  });
})();
