"""The serializers of searches: a run as it is created and listed, its detail (metric points,
where it waits, its redraws), the query of that detail, a redraw's stage-2 settings, and a
search's plan before it runs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ponas.search.config import SCORES, ConfigError, SearchConfig, resolve
from ponas.search.policy import CONTEXTS
from ponas.space import SpaceError, preset_names
from webapp.runs import datasets, services, workers
from webapp.runs.limits import long_text, over_limit
from webapp.runs.models import MetricPoint, SearchRun
from webapp.runs.models.runs import REDRAW_SETTINGS
from webapp.runs.serializers.fields import (
    LIFECYCLE,
    MAX_SAFE_INTEGER,
    PublicErrorMixin,
    TeamField,
    allowed,
    storable_number,
    user_queue,
)

PRESETS = preset_names()


class MetricPointSerializer(serializers.ModelSerializer):
    class Meta:
        model = MetricPoint
        fields = ["stage", "kind", "step", "values", "time"]


class SearchRunSerializer(PublicErrorMixin, serializers.ModelSerializer):
    error = serializers.SerializerMethodField(help_text="why the run failed or stopped")
    owner = serializers.SlugRelatedField(
        slug_field="username", read_only=True, help_text="who started the run"
    )
    team = TeamField(
        required=False,
        allow_null=True,
        default=None,
        help_text="the name of a team of yours to share the run with: its members see it and "
        "deploy from it, its admins manage it (null: only you)",
    )
    preset = serializers.ChoiceField(
        choices=PRESETS,
        error_messages={
            "invalid_choice": f'"{{input}}" is not a preset; allowed: {allowed(PRESETS)}'
        },
    )
    config = serializers.JSONField(
        required=False,
        default=dict,
        help_text=f"overrides of the preset's search settings; keys: {allowed(SearchConfig.keys())}"
        '; "dataset" names a bundled or registered dataset (server folders are not chosen here)',
    )

    class Meta:
        model = SearchRun
        fields = [
            "id",
            "name",
            "owner",
            "team",
            "preset",
            "config",
            "queue",
            "status",
            "stage",
            "progress",
            "current_layer",
            *LIFECYCLE,
            "stage2_started",
            "cancel_requested",
            "auto_resumes",
            "source_run",
        ]
        read_only_fields = [
            f for f in fields if f not in ("name", "team", "preset", "config", "queue")
        ]
        extra_kwargs = {
            "name": {"required": False},
            "source_run": {
                "help_text": "a redraw's source: the run whose stage-1 supernet its stage 2 ran "
                "on again (null: a search of its own)"
            },
        }

    def validate_config(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError(
                'expected an object of search settings, e.g. {"epochs": 2}; '
                f"allowed keys: {allowed(SearchConfig.keys())}"
            )
        unknown = sorted(set(value) - set(SearchConfig.keys()))
        if unknown:
            raise serializers.ValidationError(
                f"unknown search settings {[k[:40] for k in unknown[:5]]}; "
                f"allowed: {sorted(SearchConfig.keys())}"
            )
        for key, item in value.items():
            if not storable_number(item):
                raise serializers.ValidationError(f"{key}: the number {item!r:.40} is too large")
        if message := long_text(value):
            raise serializers.ValidationError(message)
        return value

    def validate_queue(self, value: str) -> str:
        return user_queue(self.context["request"].user, value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user, preset = self.context["request"].user, attrs["preset"]
        config = attrs.get("config", {})
        if message := datasets.refusal(user, preset, config):
            raise serializers.ValidationError({"config": [message]})
        try:  # with the dataset's kind and folder, as a worker will run it
            _, cfg = resolve(preset, datasets.search_settings(preset, config))
        except (ConfigError, SpaceError) as exc:  # e.g. input_size too small for the strides
            raise serializers.ValidationError({"config": [str(exc)]}) from None
        if message := over_limit(preset, config, cfg):
            raise serializers.ValidationError({"config": [message]})
        if not attrs.get("name"):
            attrs["name"] = f"{attrs['preset']} search"
        return attrs


class WaitingSerializer(serializers.Serializer):
    queue = serializers.CharField()
    ahead = serializers.IntegerField(
        allow_null=True, help_text="other tasks in the queue (null: the broker cannot say)"
    )
    workers = serializers.IntegerField(help_text="live workers that consume the queue")
    start_command = serializers.CharField(
        allow_null=True, help_text="the command that starts one, when none is live"
    )
    message = serializers.CharField(help_text='e.g. "waiting in queue gpu behind 3 tasks"')


class SearchRunDetailSerializer(SearchRunSerializer):
    metrics = serializers.SerializerMethodField(
        help_text="epoch-end points of the training curves (the latest PONAS_METRICS_LIMIT; "
        "with ?since=TIME only those stored after TIME), and the latest step point"
    )
    waiting = serializers.SerializerMethodField(
        help_text="where the run waits while none of its tasks runs (null otherwise)"
    )
    redraws = serializers.SerializerMethodField(
        help_text="the runs that ran stage 2 again on this run's supernet (ids, oldest first)"
    )

    class Meta(SearchRunSerializer.Meta):
        fields = [*SearchRunSerializer.Meta.fields, "path", "metrics", "waiting", "redraws"]
        read_only_fields = [
            *SearchRunSerializer.Meta.read_only_fields,
            "path",
            "metrics",
            "waiting",
            "redraws",
        ]

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_redraws(self, run: SearchRun) -> list[int]:
        return list(run.redraws.order_by("pk").values_list("pk", flat=True))

    @extend_schema_field(WaitingSerializer(allow_null=True))
    def get_waiting(self, run: SearchRun) -> dict[str, Any] | None:
        return workers.waiting(run)

    @extend_schema_field(MetricPointSerializer(many=True))
    def get_metrics(self, run: SearchRun) -> list[dict[str, Any]]:
        epochs = run.metrics.filter(kind=MetricPoint.Kind.EPOCH)
        if self.context.get("since") is not None:
            epochs = epochs.filter(time__gt=self.context["since"])
        latest = epochs.order_by("-time", "-id")[: settings.PONAS_METRICS_LIMIT]
        points = sorted(latest, key=lambda p: (p.stage, p.step))
        last_step = run.metrics.filter(kind=MetricPoint.Kind.STEP).order_by("-time", "-id").first()
        if last_step is not None:
            points.append(last_step)
        return MetricPointSerializer(points, many=True).data


class MetricsQuerySerializer(serializers.Serializer):
    """Query of a run's detail: ``since`` (the ``time`` of the newest point a client holds)."""

    since = serializers.DateTimeField(
        required=False, help_text="only metric points stored after this time"
    )


def _count(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, max_value=MAX_SAFE_INTEGER, **kwargs)


class RedrawSerializer(serializers.Serializer):
    """What ``POST /api/runs/{id}/redraw/`` takes: stage 2 again on the run's supernet with
    another ``stage2_seed`` and, optionally, other stage-2 settings; validated against the run
    (``context["run"]``): its settings with these on top, as its worker will run them."""

    stage2_seed = _count(
        min_value=0,
        help_text="the seed of the new stage-2 draw (suffixes, fine-tune batches, validation "
        "subset): not the run's own; default: the smallest one neither the run nor a redraw of "
        "it drew from",
    )
    eval_batches = _count(help_text="validation batches per entry (default: the run's)")
    suffix_samples = _count(help_text="suffixes an entry is averaged over (default: the run's)")
    finetune_steps = _count(help_text="fine-tune steps per candidate (default: the run's)")
    finetune_lr = serializers.FloatField(required=False, help_text="(default: the run's)")
    bn_batches = _count(help_text="BN recalibration batches (default: the run's)")
    score = serializers.ChoiceField(
        choices=SCORES, required=False, help_text="(default: the run's)"
    )
    context = serializers.ChoiceField(
        choices=CONTEXTS, required=False, help_text="(default: the run's)"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        run: SearchRun = self.context["run"]
        data = self.initial_data if isinstance(self.initial_data, dict) else {}
        unknown = sorted(set(data) - set(REDRAW_SETTINGS))
        if unknown:
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        f"a redraw changes stage-2 settings only, not {[k[:40] for k in unknown[:5]]}"
                        f"; allowed: {allowed(REDRAW_SETTINGS)}"
                    ]
                }
            )
        own = services.stage2_seed_of(run)
        if "stage2_seed" not in attrs:
            attrs["stage2_seed"] = services.next_redraw_seed(run)
        elif attrs["stage2_seed"] == own:
            raise serializers.ValidationError(
                {
                    "stage2_seed": [
                        f"run {run.pk}'s stage 2 drew from seed {own}: give another seed to "
                        "measure how much its entries move"
                    ]
                }
            )
        config = {**run.config, **attrs}
        try:  # with the dataset's kind and folder, as a worker will run it
            _, cfg = resolve(run.preset, datasets.search_settings(run.preset, config))
        except (ConfigError, SpaceError, ValueError) as exc:
            field = next((k for k in attrs if k in str(exc)), "non_field_errors")
            raise serializers.ValidationError({field: [str(exc)]}) from None
        if message := over_limit(run.preset, config, cfg):
            field = next((k for k in attrs if message.startswith(f"{k}=")), "non_field_errors")
            raise serializers.ValidationError({field: [message]})
        return attrs


class PlanSerializer(SearchRunSerializer):
    """A search as ``create`` takes it, plus the measured training speed of the target card:
    what :func:`ponas.plan.estimate` needs to answer before anything runs."""

    images_per_s = serializers.FloatField(
        required=False,
        min_value=1e-3,
        max_value=1e9,
        help_text="stage-1 training images/s on the target card (bench/stage1_throughput.py)",
    )

    class Meta(SearchRunSerializer.Meta):
        fields = ["name", "preset", "config", "images_per_s"]
        read_only_fields: list[str] = []

    def plan(self) -> dict[str, Any]:
        """The estimate of the validated search (``ponas plan``'s figures, as JSON)."""
        from ponas.plan import estimate

        data = self.validated_data
        preset = data["preset"]
        overrides = datasets.search_settings(preset, data.get("config", {}))
        plan = estimate(preset, overrides, images_per_s=data.get("images_per_s"))
        return {**plan.to_dict(), "text": plan.text()}
