"""The new-search form: a preset, its dataset and the main knobs, prefilled from the preset.

Values are checked by ``ponas.search.resolve`` (the same check the API's serializer makes), and
its message is shown next to the field it names.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings

from ponas.catalog import DATASET_CHANNELS
from ponas.search.config import SCORES, ConfigError, resolve
from ponas.space import SpaceError, load_space, preset_names
from webapp.runs import access, datasets
from webapp.runs.models import Queue

# (field, label, help) of the knobs the form shows, by group; every other setting keeps the
# preset's value. The field names are SearchConfig keys.
KNOBS: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "Stage 1: meta-training",
        [
            ("epochs", "Epochs", "passes over the training split, one random path per step"),
            ("batch_size", "Batch size", ""),
            ("lr", "Learning rate", "SGD with momentum, cosine schedule"),
        ],
    ),
    (
        "Stage 2: accuracy table",
        [
            ("finetune_steps", "Fine-tune steps", "per candidate, before it is scored"),
            ("finetune_lr", "Fine-tune learning rate", ""),
            ("suffix_samples", "Suffix samples", "random later layers averaged per score"),
            ("bn_batches", "BN batches", "training batches to recalibrate BatchNorm"),
            ("eval_batches", "Eval batches", "validation batches per score"),
            ("score", "Entry score", "top-1 accuracy (the paper's) or likelihood, exp(-loss)"),
        ],
    ),
    (
        "Data and compute",
        [
            ("input_size", "Input size (px)", "images are resized to this"),
            ("val_size", "Validation size", "examples held out (or a fraction below 1)"),
            ("seed", "Seed", ""),
        ],
    ),
]
KNOB_NAMES = [name for _, fields in KNOBS for name, _, _ in fields]
# Settings sent only when they differ from the preset's (a run stores overrides).
SETTINGS = ["dataset", "device", *KNOB_NAMES]
DEVICES = [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda")]


def preset_defaults(name: str) -> dict[str, Any]:
    """The settings a run of preset ``name`` uses when nothing is overridden."""
    _, cfg = resolve(name)
    values = cfg.to_dict()
    if isinstance(values["val_size"], float) and values["val_size"].is_integer():
        values["val_size"] = int(values["val_size"])
    return {key: values[key] for key in SETTINGS}


def preset_info() -> dict[str, dict[str, Any]]:
    """Every preset's description and defaults (the page swaps them in on a preset change)."""
    info = {}
    for name in preset_names():
        space = load_space(name)
        info[name] = {
            "description": space.description,
            "layers": space.num_layers,
            "candidates": len(space.candidates),
            "defaults": preset_defaults(name),
        }
    return info


class SearchForm(forms.Form):
    name = forms.CharField(
        max_length=200, required=False, widget=forms.TextInput(attrs={"placeholder": "optional"})
    )
    preset = forms.ChoiceField()
    dataset = forms.ChoiceField(
        help_text="built in (digits, shapes), or registered by an admin and shared with you"
    )
    device = forms.ChoiceField(choices=DEVICES, help_text="auto: a GPU when the worker has one")
    queue = forms.ChoiceField(
        choices=Queue.choices,
        initial=Queue.GPU,
        required=False,
        help_text="the workers that take the heavy work (make run's worker takes both)",
    )
    # a name, checked by the API's serializer (a team of the user's): one message for both
    team = forms.CharField(
        required=False,
        max_length=100,
        widget=forms.Select,
        help_text="its members see the run and deploy from it; its admins manage it",
    )
    epochs = forms.IntegerField()
    batch_size = forms.IntegerField()
    lr = forms.FloatField()
    finetune_steps = forms.IntegerField()
    finetune_lr = forms.FloatField()
    suffix_samples = forms.IntegerField()
    bn_batches = forms.IntegerField()
    eval_batches = forms.IntegerField()
    score = forms.ChoiceField(choices=[(s, s) for s in SCORES])
    input_size = forms.IntegerField()
    val_size = forms.FloatField()
    seed = forms.IntegerField()

    def __init__(self, *args: Any, user, preset: str = "digits", **kwargs: Any) -> None:
        names = preset_names()
        preset = preset if preset in names else names[0]
        kwargs.setdefault("initial", {"preset": preset, **preset_defaults(preset)})
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["preset"].choices = [(n, n) for n in names]
        available = datasets.names_for(user)
        self.fields["dataset"].choices = [(d, d) for d in available]
        teams = list(access.teams_of(user).values_list("name", flat=True))
        self.has_teams = bool(teams)  # the page offers the field to members of a team only
        self.fields["team"].widget.choices = [("", "none: only you")] + [(n, n) for n in teams]
        self.fields["dataset"].error_messages["invalid_choice"] = (
            f'"%(value)s" is not a dataset available to you (an admin registers datasets); '
            f"available: {', '.join(available)}"
        )
        if not user.is_staff:  # `default` carries every run's bookkeeping
            self.fields["queue"].choices = [
                (q, label) for q, label in Queue.choices if q in settings.PONAS_USER_QUEUES
            ]
        for _, knobs in KNOBS:
            for name, label, help_text in knobs:
                self.fields[name].label = label
                self.fields[name].help_text = help_text
                # the server checks the values (ponas's rules), not the browser
                if not isinstance(self.fields[name], forms.ChoiceField):
                    self.fields[name].widget.attrs.update({"step": "any"})
        for name in ("lr", "finetune_lr", "val_size"):
            self.fields[name].widget.attrs["inputmode"] = "decimal"

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The knob fields by group, for the template."""
        return [(title, [self[name] for name, _, _ in fields]) for title, fields in KNOBS]

    def overrides(self) -> dict[str, Any]:
        """The settings that differ from the preset's defaults (what a run stores)."""
        data = self.cleaned_data
        defaults = preset_defaults(data["preset"])
        out = {}
        for key in SETTINGS:
            value = data.get(key)
            if value is None or value == defaults[key]:
                continue
            out[key] = value
        return out

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors or "preset" not in data:
            return data
        name = data.get("dataset")
        registered = datasets.usable_by(self.user).filter(name=name).first()
        dataset = registered.kind if registered else name
        space = load_space(data["preset"])
        channels = DATASET_CHANNELS.get(dataset)
        if channels is not None and channels != space.in_channels:
            self.add_error(
                "dataset",
                f"{name} images have {channels} channel{'s' * (channels > 1)}; the "
                f"{space.name} space takes {space.in_channels}: choose a preset made for them",
            )
            return data
        try:
            resolve(data["preset"], datasets.search_settings(data["preset"], self.overrides()))
        except (ConfigError, SpaceError) as exc:
            self.add_config_error(str(exc))
        return data

    def add_config_error(self, message: str) -> None:
        """Show a ponas config error next to the setting it names (its first word)."""
        match = re.match(r"\s*(\w+)", message)
        field = match.group(1) if match and match.group(1) in self.fields else None
        self.add_error(field, message)
