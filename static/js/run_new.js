/* New search form: swap in a preset's defaults when the preset changes; show the dataset
   folder field only for datasets that read from one. */
(function () {
  "use strict";
  const form = document.getElementById("search-form");
  const presets = ponas.readJson("presets");
  if (!form || !presets) return;
  const preset = form.elements.preset;
  const dataset = form.elements.dataset;
  const folder = document.getElementById("dataset-dir-wrap");
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
    toggleFolder();
  }

  function describe() {
    const info = presets[preset.value];
    description.textContent = info ? info.description : "";
  }

  function toggleFolder() {
    folder.hidden = dataset.value === "digits" && !form.elements.dataset_dir.value;
  }

  preset.addEventListener("change", () => { fill(preset.value); describe(); });
  dataset.addEventListener("change", toggleFolder);
  document.getElementById("reset-defaults").addEventListener("click", () => fill(preset.value));
  describe();
  toggleFolder();
})();
