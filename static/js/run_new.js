/* New search form: swap in a preset's defaults when the preset changes. Datasets are chosen
   by name (bundled, or registered by an admin): the page never asks for a server folder. */
(function () {
  "use strict";
  const form = document.getElementById("search-form");
  const presets = ponas.readJson("presets");
  if (!form || !presets) return;
  const preset = form.elements.preset;
  const description = document.getElementById("preset-description");

  function fill(name) {
    const info = presets[name];
    if (!info) return;
    for (const [key, value] of Object.entries(info.defaults)) {
      const field = form.elements[key];
      if (!field) continue;
      field.value = value === null ? "" : value;
      const label = field.closest(".field");
      if (label) {
        label.classList.remove("invalid");
        label.querySelectorAll(".field-error").forEach((e) => e.remove());
      }
    }
  }

  function describe() {
    const info = presets[preset.value];
    description.textContent = info ? info.description : "";
  }

  // ---- the estimate (POST /api/runs/plan/: computes, creates nothing) -------------------------
  const estimate = document.getElementById("plan-estimate");
  const speed = document.getElementById("plan-images-per-s");
  let pending = null;

  function settings() {
    const info = presets[preset.value];
    const config = {};
    if (!info) return config;
    for (const [key, value] of Object.entries(info.defaults)) {
      const field = form.elements[key];
      if (!field || field.value === "") continue;
      const raw = field.type === "checkbox" ? field.checked : field.value;
      const typed = typeof value === "number" && raw !== "" ? Number(raw) : raw;
      if (typed !== value) config[key] = typed;
    }
    return config;
  }

  async function plan() {
    if (!estimate) return;
    const body = { preset: preset.value, config: settings() };
    if (speed && Number(speed.value) > 0) body.images_per_s = Number(speed.value);
    const answer = await ponas.api("/api/runs/plan/", { method: "POST", body });
    estimate.textContent = answer.ok ? answer.data.text : "no estimate: " + ponas.errorText(answer.data, answer.status);
  }

  function replan() {
    clearTimeout(pending);
    pending = setTimeout(plan, 300);
  }

  preset.addEventListener("change", () => { fill(preset.value); describe(); replan(); });
  document.getElementById("reset-defaults").addEventListener("click", () => { fill(preset.value); replan(); });
  form.addEventListener("input", replan);
  if (speed) speed.addEventListener("input", replan);
  describe();
  plan();
})();
