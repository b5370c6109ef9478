"""Serializers: they validate what users send, with errors that name the field and the
allowed values, and shape what the API returns."""

from __future__ import annotations

import math
import re
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from ponas.files import DEFAULT_FORMATS
from ponas.search.config import ConfigError, SearchConfig, resolve
from ponas.solve import Infeasible, solve
from ponas.space import SpaceError, preset_names
from ponas.table import COST_KINDS
from ponas.units import parse_budget
from webapp.runs import access, datasets, workers
from webapp.runs.limits import audit_over_limit, long_text, over_limit
from webapp.runs.models import (
    FORMATS,
    Audit,
    Deployment,
    DeviceProfile,
    MetricPoint,
    SearchRun,
    Status,
    Team,
    Worker,
)
from webapp.runs.tables import accuracy_table

PRESETS = preset_names()


def allowed(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(values)


class MetricPointSerializer(serializers.ModelSerializer):
    class Meta:
        model = MetricPoint
        fields = ["stage", "kind", "step", "values", "time"]


# JSON numbers every database and client holds exactly: integers up to 2**53, finite floats.
MAX_SAFE_INTEGER = 2**53


def _storable_number(value: Any) -> bool:
    """Whether every number in ``value`` (nested lists and objects too) is one a database and
    a client hold exactly. Walked without recursion: no nesting makes it raise."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and abs(item) > MAX_SAFE_INTEGER:
            return False
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return True


# What runs and deployments both report of their life: why it failed, when, on which worker.
LIFECYCLE = ["error", "created", "started", "finished", "worker", "heartbeat"]


class PublicErrorMixin:
    """``error`` as its user may read it: no server path, no worker host (datasets.py)."""

    def get_error(self, obj) -> str:
        if not obj.error:
            return ""
        run = obj if isinstance(obj, SearchRun) else obj.run
        return datasets.public_text(obj.error, run, obj.worker)


def user_queue(user, value: str) -> str:
    """A queue ``user`` may send heavy work to (staff: any)."""
    if value not in settings.PONAS_USER_QUEUES and not user.is_staff:
        raise serializers.ValidationError(
            f'the "{value}" queue is kept for the bookkeeping every run needs; '
            f"allowed: {allowed(settings.PONAS_USER_QUEUES)}"
        )
    return value


@extend_schema_field({"type": "string", "nullable": True, "example": "vision"})
class TeamField(serializers.Field):
    """A team by its name, one the requesting user is a member of; null (or empty): none, the
    run is private to its owner."""

    def to_internal_value(self, data: Any) -> Team | None:
        if data == "":
            return None
        if not isinstance(data, str):
            raise serializers.ValidationError(
                f"expected a team's name (a string), got {type(data).__name__}"
            )
        # matched here, not in a query: any string (a NUL too) is a name that is not theirs
        teams = {team.name: team for team in access.teams_of(self.context["request"].user)}
        if data not in teams:
            raise serializers.ValidationError(not_your_team(list(teams), data))
        return teams[data]

    def to_representation(self, value: Team) -> str:
        return value.name


def not_your_team(mine: list[str], name: str) -> str:
    """Why a user in the teams ``mine`` may not share a run with the team ``name`` (one they
    are not a member of; a team that does not exist reads the same)."""
    yours = f"your teams: {allowed(mine)}" if mine else "you are a member of no team"
    return f'you are not a member of a team named "{name:.100}"; {yours}'


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
        ]
        read_only_fields = [
            f for f in fields if f not in ("name", "team", "preset", "config", "queue")
        ]
        extra_kwargs = {"name": {"required": False}}

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
            if not _storable_number(item):
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

    class Meta(SearchRunSerializer.Meta):
        fields = [*SearchRunSerializer.Meta.fields, "path", "metrics", "waiting"]
        read_only_fields = [
            *SearchRunSerializer.Meta.read_only_fields,
            "path",
            "metrics",
            "waiting",
        ]

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


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string"}], "example": "300M"})
class BudgetField(serializers.Field):
    """A budget: a positive number, or a string such as ``300M``, ``5.1m``, ``2e6``."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, int) and not isinstance(data, bool) and abs(data) > 1e300:
            # float() of an integer this long overflows; say so as parse_budget does
            raise serializers.ValidationError(
                f"invalid budget {str(data)[:4]}...: the number is too large"
            )
        try:
            return parse_budget(data)
        except (TypeError, ValueError, OverflowError) as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: float) -> float:
        return value


_DIGITS = re.compile(r"[0-9]+", re.ASCII)


class IdField(serializers.PrimaryKeyRelatedField):
    """An object by its id: an integer (or its digits), as ``does_not_exist`` when no database
    column could hold it."""

    def to_internal_value(self, data: Any):
        # an id is an integer (or its ASCII digits: "²" is a digit to str.isdigit, not to
        # int): 1.5 is not run 1, and a number no database column holds is no run at all
        if isinstance(data, str) and _DIGITS.fullmatch(data.strip()):
            if len(data.strip()) > 20:  # int() of thousands of digits is refused (or slow)
                self.fail("does_not_exist", pk_value="(huge id)")
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if not 0 < data < 2**63:
            self.fail("does_not_exist", pk_value=data if abs(data) < 10**20 else "(huge id)")
        return super().to_internal_value(data)


class RunField(IdField):
    """A run the requesting user sees: theirs or their team's (any other run is "not found",
    like a missing one)."""

    default_error_messages = {
        "required": "this field is required: the id of a succeeded run",
        "does_not_exist": "run {pk_value} not found",
        "incorrect_type": "expected a run id (an integer), got {data_type}",
    }

    def get_queryset(self):
        return access.visible_runs(self.context["request"].user)


@extend_schema_field({"type": "integer", "description": "a device profile id"})
class ProfileField(IdField):
    """A succeeded device profile of a run the requesting user sees (the latency to budget
    in)."""

    default_error_messages = {
        "does_not_exist": "device profile {pk_value} not found (or not measured yet)",
        "incorrect_type": "expected a device profile id (an integer), got {data_type}",
    }

    def get_queryset(self):
        return access.visible_profiles(self.context["request"].user).filter(status=Status.SUCCEEDED)


def check_profile(run: SearchRun, profile: DeviceProfile | None) -> None:
    """A profile given with a run must be one of that run's."""
    if profile is not None and profile.run_id != run.pk:
        raise serializers.ValidationError(
            {"profile": [f"device profile {profile.pk} is of run {profile.run_id}, not {run.pk}"]}
        )


class DeviceProfileSerializer(PublicErrorMixin, serializers.ModelSerializer):
    """A device's latency for a run: what to create (a queue), and what its worker measured."""

    error = serializers.SerializerMethodField(help_text="why the timing failed")

    queue = serializers.CharField(
        required=False,
        max_length=16,
        help_text="the Celery queue whose worker times the blocks on its device (default: the run's)",
    )
    requested_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="who asked for the timing (the run's owner or a member of its team)",
    )

    class Meta:
        model = DeviceProfile
        fields = [
            "id",
            "run",
            "queue",
            "device",
            "status",
            "error",
            "worker",
            "created",
            "started",
            "finished",
            "requested_by",
            "lut",
        ]
        read_only_fields = [f for f in fields if f != "queue"]

    def validate_queue(self, value: str) -> str:
        return user_queue(self.context["request"].user, value)


class ProfileQuerySerializer(serializers.Serializer):
    profile = ProfileField(
        required=False, help_text="a device profile of this run: its latency as latency_ms"
    )


class MetricsQuerySerializer(serializers.Serializer):
    """Query of a run's detail: ``since`` (the ``time`` of the newest point a client holds)."""

    since = serializers.DateTimeField(
        required=False, help_text="only metric points stored after this time"
    )


# What a client sends for a deployment; the rest is the build's result.
DEPLOYMENT_INPUTS = ("run", "max_macs", "max_params", "max_latency_ms", "profile")
DEPLOYMENT_INPUTS += ("finetune_epochs", "formats")


class DeploymentSerializer(PublicErrorMixin, serializers.ModelSerializer):
    error = serializers.SerializerMethodField(help_text="why the build failed")
    run = RunField()
    max_macs = BudgetField(required=False, allow_null=True)
    max_params = BudgetField(required=False, allow_null=True)
    max_latency_ms = BudgetField(required=False, allow_null=True)
    profile = ProfileField(
        required=False,
        allow_null=True,
        help_text="a device profile of the run: max_latency_ms is that device's latency",
    )
    finetune_epochs = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=100
    )
    formats = serializers.MultipleChoiceField(
        choices=FORMATS,
        required=False,
        allow_empty=False,
        error_messages={
            "invalid_choice": f'"{{input}}" is not a format; allowed: {allowed(FORMATS)}',
            "not_a_list": f"expected a list of formats ({allowed(FORMATS)}), got {{input_type}}",
            "empty": f"give at least one format: {allowed(FORMATS)}",
        },
    )
    downloads = serializers.SerializerMethodField()
    requested_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="who asked for the build (the run's owner or a member of its team)",
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "run",
            "max_macs",
            "max_params",
            "max_latency_ms",
            "profile",
            "finetune_epochs",
            "formats",
            "queue",
            "status",
            "choices",
            "predicted_score",
            "score_stderr",
            "cost",
            "measured_accuracy",
            "metrics",
            *LIFECYCLE,
            "auto_resumes",
            "downloads",
            "requested_by",
        ]
        read_only_fields = [f for f in fields if f not in DEPLOYMENT_INPUTS]

    def to_representation(self, instance: Deployment) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["formats"] = [f for f in FORMATS if f in instance.formats]
        return data

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_downloads(self, deployment: Deployment) -> dict[str, str]:
        if deployment.status != Status.SUCCEEDED:
            return {}
        request = self.context.get("request")
        return {
            fmt: reverse("deployment-download", args=[deployment.pk, fmt], request=request)
            for fmt in FORMATS
            if fmt in deployment.formats
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        run: SearchRun = attrs["run"]
        if not run.has_table:
            raise serializers.ValidationError(
                {
                    "run": [
                        f"run {run.pk} has no accuracy table yet (status {run.status}); "
                        "deploy from a succeeded run"
                    ]
                }
            )
        attrs["formats"] = [f for f in FORMATS if f in attrs.get("formats", DEFAULT_FORMATS)]
        budgets = {
            kind: attrs[f"max_{kind}"]
            for kind in COST_KINDS
            if attrs.get(f"max_{kind}") is not None
        }
        check_profile(run, attrs.get("profile"))
        table = accuracy_table(run, attrs.get("profile"))
        try:
            selection = solve(table, budgets)
        except Infeasible as exc:
            raise serializers.ValidationError({f"max_{exc.kind}": [str(exc)]}) from None
        except ValueError as exc:  # a cost kind this table does not have (latency)
            kind = next((k for k in budgets if k not in table.cost), None)
            raise serializers.ValidationError(
                {f"max_{kind}" if kind else "run": [str(exc)]}
            ) from None
        attrs["choices"] = selection.choices
        attrs["predicted_score"] = selection.score
        attrs["score_stderr"] = selection.score_stderr
        attrs["cost"] = selection.cost
        return attrs


class BudgetQuerySerializer(ProfileQuerySerializer):
    """Query of ``preview``: any of the three budgets (none gives the best path)."""

    max_macs = BudgetField(required=False)
    max_params = BudgetField(required=False)
    max_latency_ms = BudgetField(required=False)

    def budgets(self) -> dict[str, float]:
        return {k.removeprefix("max_"): v for k, v in self.validated_data.items() if k != "profile"}


class ParetoQuerySerializer(ProfileQuerySerializer):
    cost = serializers.ChoiceField(
        choices=list(COST_KINDS),
        default="macs",
        error_messages={
            "invalid_choice": f'"{{input}}" is not a cost kind; allowed: {", ".join(COST_KINDS)}'
        },
    )


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


class TableQuerySerializer(ProfileQuerySerializer):
    format = serializers.ChoiceField(
        choices=["json", "csv"],
        default="json",
        error_messages={"invalid_choice": '"{input}" is not a table format; allowed: json, csv'},
    )


class SelectionSerializer(serializers.Serializer):
    """A chosen network: what ``ponas deploy --json`` prints."""

    choices = serializers.ListField(child=serializers.CharField())
    score = serializers.FloatField(
        help_text="sum over layers of A[l][c_l]: a score that ranks the networks of this "
        "table, not a test accuracy"
    )
    score_stderr = serializers.FloatField(
        allow_null=True,
        help_text="standard error of score: sqrt of the sum of the chosen entries' squared "
        "standard errors; null when the table does not record all of them",
    )
    loss = serializers.FloatField(help_text="sum over layers of max A[l] - A[l][c_l]")
    cost = serializers.DictField(child=serializers.FloatField())


def shown_task(current_task: str, user) -> str:
    """What ``user`` may read of a worker's current task: staff all of it, anyone else its
    name only (its arguments name other users' runs and builds)."""
    if getattr(user, "is_staff", False):
        return current_task
    return current_task.partition("[")[0].strip()


class WorkerSerializer(serializers.ModelSerializer):
    current_task = serializers.SerializerMethodField(
        help_text="the task it runs (its name; staff also read its id and arguments)"
    )

    def get_current_task(self, worker: Worker) -> str:
        request = self.context.get("request")
        return shown_task(worker.current_task, getattr(request, "user", None))

    class Meta:
        model = Worker
        fields = [
            "name",
            "queues",
            "device",
            "torch_version",
            "current_task",
            "started",
            "last_seen",
        ]
        read_only_fields = fields


# ---- audits ---------------------------------------------------------------------------------

AUDIT_INPUTS = ["budgets", "networks", "epochs", "seeds"]


@extend_schema_field(
    {"type": "array", "items": {"oneOf": [{"type": "number"}, {"type": "string"}]}}
)
class BudgetListField(serializers.Field):
    """MACs budgets: a list of numbers or strings such as ``1.2M``, each given once."""

    def to_internal_value(self, data: Any) -> list[float]:
        if not isinstance(data, list):
            raise serializers.ValidationError(
                f'expected a list of MACs budgets, e.g. ["1.2M", "2M"], got {type(data).__name__}'
            )
        if not data:
            raise serializers.ValidationError("give at least one MACs budget, e.g. 1.2M")
        limit = audit_over_limit("budgets", len(data))
        if limit:
            raise serializers.ValidationError(limit)
        budgets: list[float] = []
        for i, item in enumerate(data):
            try:
                value = BudgetField().to_internal_value(item)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError(f"budget {i + 1}: {exc.detail[0]}") from None
            if value in budgets:
                raise serializers.ValidationError(f"budget {item} is given twice")
            budgets.append(value)
        return budgets

    def to_representation(self, value: list[float]) -> list[float]:
        return value


class AuditSerializer(PublicErrorMixin, serializers.ModelSerializer):
    """A table audit of a succeeded run: what to audit (budgets, networks per budget, epochs,
    seeds) and, once done, the ``ponas.audit`` report in ``results``."""

    error = serializers.SerializerMethodField(help_text="why the audit failed")
    budgets = BudgetListField(help_text='MACs budgets, e.g. ["1.2M", "2M"]')
    networks = serializers.IntegerField(
        default=10, min_value=3, help_text="cost-matched networks drawn per budget"
    )
    epochs = serializers.IntegerField(
        default=3, min_value=1, help_text="from-scratch training epochs"
    )
    seeds = serializers.IntegerField(
        default=1,
        min_value=1,
        help_text="trainings of every network (2 or more: the truth's "
        "own agreement between seeds is reported)",
    )
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="who asked for it"
    )
    progress = serializers.FloatField(read_only=True, help_text="trainings done, 0..1")

    class Meta:
        model = Audit
        fields = [
            "id",
            "run",
            *AUDIT_INPUTS,
            "status",
            "progress",
            "trained",
            "total",
            "estimate",
            "pools",
            "results",
            *LIFECYCLE,
            "auto_resumes",
            "requested_by",
        ]
        read_only_fields = [f for f in fields if f not in AUDIT_INPUTS]

    def _limit(self, key: str, value: int) -> int:
        message = audit_over_limit(key, value)
        if message:
            raise serializers.ValidationError(message)
        return value

    def validate_networks(self, value: int) -> int:
        return self._limit("networks", value)

    def validate_epochs(self, value: int) -> int:
        return self._limit("epochs", value)

    def validate_seeds(self, value: int) -> int:
        return self._limit("seeds", value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Draw the pools (a budget with too few cost-matched networks is refused here) and
        price the audit; both go with the validated fields to ``services.start_audit``."""
        from webapp.runs import audits

        run: SearchRun = self.context["run"]
        table = accuracy_table(run)
        try:
            plan = audits.plan(
                table, attrs["budgets"], attrs["networks"], attrs["epochs"], attrs["seeds"]
            )
        except ValueError as exc:
            raise serializers.ValidationError({"budgets": [str(exc)]}) from None
        limit = settings.PONAS_AUDIT_LIMITS["trainings"]
        if len(plan.trainings) > limit:
            raise serializers.ValidationError(
                {
                    "networks": [
                        f"this audit would train {len(plan.trainings):,} networks; this server "
                        f"trains at most {limit:,} per audit (ask for fewer budgets, networks "
                        "or seeds)"
                    ]
                }
            )
        attrs["plan"] = plan
        attrs["estimate"] = audits.estimate(run, plan, attrs["epochs"], attrs["seeds"])
        return attrs
