/* "Audit this table" on a succeeded run: the form asks `audits/estimate/` what an audit would
   cost as its fields change (debounced, answers to older fields ignored) and starts one; the
   run's audits are listed, polled while one is queued or running, and a finished audit shows
   per budget a scatter of the table's score against the from-scratch accuracy (the deployed
   network marked), tau with its interval for the table and for MACs alone, the truth's own
   seed agreement, and the report's sentence. */
(function () {
  "use strict";
  const panel = document.getElementById("audit-panel");
  if (!panel) return;
  const listApi = panel.dataset.api;
  const estimateApi = panel.dataset.estimateApi;
  const form = document.getElementById("audit-form");
  const fields = {
    budgets: document.getElementById("audit-budgets"),
    networks: document.getElementById("audit-networks"),
    epochs: document.getElementById("audit-epochs"),
    seeds: document.getElementById("audit-seeds"),
  };
  const estimateLine = document.getElementById("audit-estimate");
  const errorLine = document.getElementById("audit-error");
  const list = document.getElementById("audit-list");
  const button = document.getElementById("audit-button");
  const charts = {}; // "audit/budget index" -> Chart
  const shown = {}; // audit id -> the state it was last drawn in
  let seq = 0;
  let timer = null;
  let polling = false;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    children.filter((c) => c !== null && c !== undefined).forEach((c) => node.append(c));
    return node;
  }

  function body() {
    const budgets = fields.budgets.value.split(/[\s,]+/).filter(Boolean);
    const out = { budgets };
    for (const k of ["networks", "epochs", "seeds"]) {
      if (fields[k].value.trim() !== "") out[k] = Number(fields[k].value);
    }
    return out;
  }

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = !text;
  }

  // ---- the estimate -------------------------------------------------------------------------

  async function estimate() {
    const mine = ++seq;
    const request = body();
    if (!request.budgets.length) {
      estimateLine.textContent = "Give one or more MACs budgets to see what the audit costs before it starts.";
      showError("");
      return;
    }
    const { ok, status, data } = await ponas.api(estimateApi, { method: "POST", body: request });
    if (mine !== seq) return;
    if (!ok) {
      showError(ponas.errorText(data, status));
      estimateLine.textContent = "";
      return;
    }
    showError("");
    estimateLine.textContent = "Cost: " + data.text;
    estimateLine.dataset.trainings = String(data.trainings);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(estimate, 250);
  }

  Object.values(fields).forEach((input) => input.addEventListener("input", schedule));

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    button.disabled = true;
    const { ok, status, data } = await ponas.api(listApi, { method: "POST", body: body() });
    button.disabled = false;
    if (!ok) {
      showError(ponas.errorText(data, status));
      return;
    }
    showError("");
    await load();
  });

  // ---- the audits ---------------------------------------------------------------------------

  function interval(pair, digits) {
    return "[" + pair[0].toFixed(digits) + ", " + pair[1].toFixed(digits) + "]";
  }

  function figures(f, seeds) {
    const dl = el("dl", { class: "audit-figures" });
    const rows = [
      ["tau, table", f.tau_table.toFixed(2) + " " + interval(f.tau_table_interval, 2), "tau-table"],
      ["tau, MACs alone", f.tau_macs.toFixed(2) + " " + interval(f.tau_macs_interval, 2), "tau-macs"],
      ["difference", f.difference.toFixed(2) + " " + interval(f.difference_interval, 2), "difference"],
      ["deployed network", "percentile " + f.deployed_percentile.toFixed(0) + " " + interval(f.deployed_percentile_interval, 0) +
        " · " + ponas.pct(f.deployed_truth, 1) + " from scratch", "deployed"],
    ];
    if (seeds > 1) {
      rows.push(["seed agreement", "tau " + f.seed_agreement.toFixed(2) + " between " + seeds + " seeds · spread up to " +
        ponas.pct(Math.max(...f.truth_spread), 1) + (f.cannot_tell ? " · too noisy to judge the table" : ""), "seed-agreement"]);
    } else {
      rows.push(["seed agreement", "not measured (1 seed): more seeds tell whether the truth can judge", "seed-agreement"]);
    }
    rows.forEach(([label, value, key]) => {
      dl.append(el("dt", { text: label }), el("dd", { text: value, "data-figure": key }));
    });
    return dl;
  }

  function drawChart(canvas, f, key) {
    if (charts[key]) charts[key].destroy();
    const drawn = f.score.map((s, i) => ({ x: s, y: f.truth[i], macs: f.macs[i], name: f.pool[i].join(" ") }));
    charts[key] = new Chart(canvas, {
      type: "scatter",
      data: {
        datasets: [
          { label: "drawn networks", data: drawn, backgroundColor: "rgba(99, 102, 241, 0.75)", borderColor: "#4f46e5", pointRadius: 4, pointHoverRadius: 6 },
          {
            label: "deployed network",
            data: [{ x: f.deployed_score, y: f.deployed_truth, name: f.deployed.join(" ") }],
            pointStyle: "rectRot", pointRadius: 8, pointHoverRadius: 9, borderWidth: 2, backgroundColor: "rgba(253, 231, 37, 0.9)", borderColor: "#111827",
          },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 10 } },
          tooltip: {
            callbacks: {
              label: (ctx) => ctx.raw.name + ": score " + ctx.raw.x.toFixed(3) + ", " + ponas.pct(ctx.raw.y, 1) +
                (ctx.raw.macs ? ", " + ponas.formatCost("macs", ctx.raw.macs) : ""),
            },
          },
        },
        scales: {
          x: { title: { display: true, text: "table score (sum of the entries)" }, ticks: { callback: ponas.tickLabels("") } },
          y: { title: { display: true, text: "from-scratch test accuracy" }, ticks: { callback: ponas.tickLabels("%") } },
        },
      },
    });
  }

  function render(audit) {
    const state = audit.status + "/" + audit.trained;
    let node = list.querySelector('[data-audit-id="' + audit.id + '"]');
    if (node && shown[audit.id] === state) return;
    shown[audit.id] = state;
    const fresh = el("article", { class: "audit", "data-audit-id": String(audit.id), "data-status": audit.status });
    const head = el("div", { class: "audit-head" },
      el("b", { text: "Audit #" + audit.id }),
      el("span", { class: "badge status-" + audit.status, text: audit.status }),
      el("span", { class: "small muted", text:
        audit.budgets.map((b) => ponas.formatCost("macs", b)).join(", ") + " · " + audit.networks + " networks per budget · " +
        audit.epochs + " epoch" + (audit.epochs === 1 ? "" : "s") + " · " + audit.seeds + " seed" + (audit.seeds === 1 ? "" : "s") +
        (audit.requested_by ? " · by " + audit.requested_by : "") }));
    if (ponas.ACTIVE.includes(audit.status)) {
      const cancel = el("button", { class: "btn warn small", type: "button", text: "Cancel" });
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        const { ok, status, data } = await ponas.api(listApi + audit.id + "/cancel/", { method: "POST" });
        if (!ok) showError(ponas.errorText(data, status));
        await load();
      });
      head.append(cancel);
    }
    fresh.append(head);
    if (ponas.ACTIVE.includes(audit.status)) {
      const share = audit.total ? Math.round((100 * audit.trained) / audit.total) : 0;
      fresh.append(el("div", { class: "progress-line" },
        el("div", { class: "progress live" }, el("span", { style: "width: " + share + "%" })),
        el("span", { class: "small muted tabular audit-progress", text: audit.trained + " of " + audit.total + " trainings" })));
      if (audit.estimate && audit.estimate.text) fresh.append(el("p", { class: "small muted", text: audit.estimate.text }));
    }
    if (audit.error) fresh.append(el("pre", { class: "error-text", text: audit.error }));
    if (audit.status === "succeeded" && audit.results) {
      const grid = el("div", { class: "audit-budgets" });
      audit.results.budgets.forEach((f, i) => {
        const canvas = el("canvas", { class: "audit-chart", "aria-label": "Table score against from-scratch accuracy at " + ponas.formatCost("macs", f.budget) });
        const box = el("div", { class: "audit-budget", "data-budget": String(f.budget) },
          el("h3", { text: ponas.formatCost("macs", f.budget) + " · " + f.networks + " of " + f.matched + " cost-matched networks" }),
          el("div", { class: "chart-box" }, canvas),
          figures(f, audit.results.seeds),
          el("p", { class: "small audit-sentence", text: f.sentence }),
          el("p", { class: "small muted", text: "The intervals rest on " + f.networks + " networks: more networks narrow them." }));
        grid.append(box);
        fresh.append(grid);
        requestAnimationFrame(() => drawChart(canvas, f, audit.id + "/" + i));
      });
    }
    if (node) node.replaceWith(fresh);
    else list.append(fresh);
  }

  async function load() {
    const { ok, data } = await ponas.api(listApi);
    if (!ok) return false;
    const audits = (data.results || []).slice(0, 5);
    const keep = new Set(audits.map((a) => String(a.id)));
    list.querySelectorAll("[data-audit-id]").forEach((node) => { if (!keep.has(node.dataset.auditId)) node.remove(); });
    audits.forEach((audit) => render(audit));
    // newest first
    audits.forEach((audit) => list.append(list.querySelector('[data-audit-id="' + audit.id + '"]')));
    const active = audits.some((a) => ponas.ACTIVE.includes(a.status));
    if (active && !polling) {
      polling = true;
      ponas.poll(async () => {
        const again = await load();
        if (!again) polling = false;
        return again;
      }, 2000);
    }
    return active;
  }

  load();
})();
