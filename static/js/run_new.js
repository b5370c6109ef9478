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

  preset.addEventListener("change", () => { fill(preset.value); describe(); });
  document.getElementById("reset-defaults").addEventListener("click", () => fill(preset.value));
  describe();
})();
