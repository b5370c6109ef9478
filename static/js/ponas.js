/* Shared helpers of the dashboard pages: API calls with the session cookie and CSRF token,
   cost formatting (the same rules as ponas.deploy.format_cost), the heatmap colour scales. */
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /** fetch() a same-origin API URL; resolves to {ok, status, data} and never throws on HTTP errors. */
  async function api(url, options) {
    const { method = "GET", body } = options || {};
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET" && method !== "HEAD") init.headers["X-CSRFToken"] = csrfToken();
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      return { ok: false, status: 0, data: { error: "the server did not answer (" + err.message + ")" } };
    }
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = { error: text.slice(0, 300) }; }
    }
    return { ok: response.ok, status: response.status, data };
  }

  /** One readable line from an API error body: {"error": ...} or DRF field errors. */
  function errorText(data, status) {
    if (!data) return "request failed (HTTP " + status + ")";
    if (typeof data.error === "string") return data.error;
    const parts = [];
    for (const [field, messages] of Object.entries(data)) {
      const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
      parts.push(field === "non_field_errors" ? text : field + ": " + text);
    }
    return parts.join("; ") || "request failed (HTTP " + status + ")";
  }

  function sig3(x) {
    if (x === 0) return "0";
    const decimals = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
    let text = x.toFixed(decimals);
    if (decimals && Math.abs(parseFloat(text)) >= Math.pow(10, 3 - decimals)) text = x.toFixed(decimals - 1);
    return text;
  }

  function si(x) {
    if (Math.abs(x) < 1000) return Number.isInteger(x) ? String(x) : sig3(x);
    const steps = [[1e3, "K"], [1e6, "M"], [1e9, "G"]];
    for (const [div, suffix] of steps) {
      const text = sig3(x / div);
      if (Math.abs(parseFloat(text)) < 1000 || suffix === "G") return text + suffix;
    }
    return String(x);
  }

  /** The fewest decimals that write `step` exactly when it is a round step (0.25 -> 2, 0.5 -> 1,
      20 -> 0), and never fewer than it takes to tell values `step` apart. */
  function decimalsFor(step) {
    const least = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
    const scaled = step * Math.pow(10, least);
    return Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled) ? least : least + 1;
  }

  const SI_AXIS = [[1e9, "G"], [1e6, "M"], [1e3, "K"]];

  /** A Chart.js `ticks.callback` for a linear axis: the labels take their precision from the
      step between the ticks, so neighbours never read the same ("99.75%, 100.00%", not "100%,
      100%") and no label carries more digits than that. `unit`: "" plain numbers, "%" fractions
      as percentages, "si" counts with one K/M/G suffix for the whole axis. Every chart of the
      dashboard labels its value axes with it. */
  function tickLabels(unit) {
    return function (value, index, ticks) {
      let step = Infinity;
      for (let i = 1; i < ticks.length; i++) {
        const gap = Math.abs(ticks[i].value - ticks[i - 1].value);
        if (gap > 0) step = Math.min(step, gap);
      }
      let scale = 1, suffix = "";
      if (unit === "%") [scale, suffix] = [100, "%"];
      if (unit === "si") {
        const top = Math.max(...ticks.map((t) => Math.abs(t.value)));
        const si = SI_AXIS.find(([div]) => top >= div);
        if (si) [scale, suffix] = [1 / si[0], si[1]];
      }
      if (!Number.isFinite(step)) return sig3(value * scale) + suffix; // a single tick
      if (Math.abs(value) < step * 1e-9) return "0" + (unit === "%" ? "%" : "");
      return (value * scale).toFixed(decimalsFor(step * scale)) + suffix;
    };
  }

  const UNITS = { macs: "MACs", params: "params", latency_ms: "ms" };

  /** "41.2M MACs", "3.40M params", "12.3 ms". */
  function formatCost(kind, value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (kind === "latency_ms") return sig3(value) + " ms";
    return si(value) + " " + (UNITS[kind] || kind);
  }

  function pct(value, digits) {
    if (value === null || value === undefined) return "—";
    return (100 * value).toFixed(digits === undefined ? 1 : digits) + "%";
  }

  // Colour scales: accuracy on viridis (dark = low, yellow = high); accuracy loss on a warm
  // scale (pale = no loss, dark red = the largest loss in the table).
  const SCALES = {
    accuracy: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
    loss: ["#fcfdbf", "#fde2a0", "#fec287", "#fca570", "#fc8961", "#f1605d", "#de4968", "#b73779", "#8c2981", "#5f187f"],
  };

  function hexToRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function rgbAt(t, mode) {
    const stops = SCALES[mode] || SCALES.accuracy;
    const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const a = hexToRgb(stops[i]);
    const b = hexToRgb(stops[i + 1]);
    const f = x - i;
    return a.map((v, k) => Math.round(v + (b[k] - v) * f));
  }

  /** The colour of a cell: t in [0, 1] on the scale of `mode` ("accuracy" or "loss"). */
  function color(t, mode) {
    const [r, g, b] = rgbAt(t, mode);
    return "rgb(" + r + "," + g + "," + b + ")";
  }

  /** Black or white, whichever reads better on color(t, mode). */
  function ink(t, mode) {
    const [r, g, b] = rgbAt(t, mode);
    return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#111827" : "#ffffff";
  }

  function gradient(mode) {
    return "linear-gradient(90deg, " + (SCALES[mode] || SCALES.accuracy).join(", ") + ")";
  }

  /** Call fn every `ms` while it resolves to true (one call at a time; slower when hidden). */
  function poll(fn, ms) {
    let stopped = false;
    async function tick() {
      if (stopped) return;
      let again = true;
      try { again = await fn(); } catch (err) { console.error(err); }
      if (again && !stopped) setTimeout(tick, document.hidden ? ms * 4 : ms);
    }
    setTimeout(tick, ms);
    return () => { stopped = true; };
  }

  function readJson(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  const ACTIVE = ["queued", "running"];

  window.ponas = { api, errorText, formatCost, pct, sig3, si, tickLabels, color, ink, gradient, poll, readJson, csrfToken, ACTIVE };
})();
