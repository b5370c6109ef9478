"""The admin registers every model: runs with their entries and metrics inline, teams with
their members."""

from django.contrib import admin

from webapp.runs.models import (
    Artifact,
    Audit,
    AuditNetwork,
    Dataset,
    Deployment,
    DeviceProfile,
    Lease,
    Membership,
    MetricPoint,
    SearchRun,
    TableEntry,
    Team,
    Worker,
)


class TableEntryInline(admin.TabularInline):
    model = TableEntry
    extra = 0
    fields = ["layer", "candidate", "accuracy", "macs", "params", "latency_ms", "worker"]
    readonly_fields = fields


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0
    fields = ["kind", "file", "size", "sha256"]
    readonly_fields = fields


@admin.register(SearchRun)
class SearchRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "owner",
        "team",
        "preset",
        "status",
        "stage",
        "progress",
        "created",
    ]
    list_filter = ["status", "preset", "stage", "team"]
    search_fields = ["name", "owner__username", "team__name"]
    readonly_fields = ["created", "started", "finished", "heartbeat", "worker"]
    inlines = [TableEntryInline, ArtifactInline]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    verbose_name, verbose_name_plural = "member", "members"
    fields = ["user", "role"]
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams and their members: a member sees the team's runs and deploys from them, an admin
    also cancels, resumes and deletes them."""

    list_display = ["name", "members", "created"]
    search_fields = ["name", "memberships__user__username"]
    inlines = [MembershipInline]

    @admin.display(description="members")
    def members(self, team: Team) -> int:
        return team.memberships.count()


@admin.register(MetricPoint)
class MetricPointAdmin(admin.ModelAdmin):
    list_display = ["run", "stage", "kind", "step", "values", "time"]
    list_filter = ["stage", "kind"]


@admin.register(TableEntry)
class TableEntryAdmin(admin.ModelAdmin):
    list_display = ["run", "layer", "candidate", "accuracy", "macs", "params", "worker"]
    list_filter = ["worker"]


class JobAdmin(admin.ModelAdmin):
    """A build, a device profile or an audit: listed by id, run and status, then its own
    ``columns``, then when it was created; filtered by status."""

    columns: tuple[str, ...] = ()
    list_filter = ["status"]

    def get_list_display(self, request):
        return ["id", "run", "status", *self.columns, "created"]


@admin.register(Deployment)
class DeploymentAdmin(JobAdmin):
    columns = ("max_macs", "max_params", "predicted_score")
    inlines = [ArtifactInline]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "file", "size", "run", "deployment", "created"]
    list_filter = ["kind"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    """Registered datasets: their folder must lie under PONAS_DATA_ROOTS (checked on save)."""

    list_display = ["name", "kind", "root", "everyone", "created"]
    list_filter = ["kind", "everyone"]
    search_fields = ["name", "root", "description"]
    filter_horizontal = ["users", "groups"]


@admin.register(DeviceProfile)
class DeviceProfileAdmin(JobAdmin):
    columns = ("device", "queue", "worker")
    list_filter = [*JobAdmin.list_filter, "queue"]
    search_fields = ["device", "worker"]


class AuditNetworkInline(admin.TabularInline):
    model = AuditNetwork
    extra = 0
    fields = ["key", "choices", "seed", "accuracy", "seconds"]
    readonly_fields = fields
    can_delete = False


@admin.register(Audit)
class AuditAdmin(JobAdmin):
    columns = ("trained", "total", "requested_by")
    inlines = [AuditNetworkInline]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["key", "worker", "task_id", "attempt", "renewed", "deaths"]
    search_fields = ["key", "worker"]
    readonly_fields = [f.name for f in Lease._meta.fields]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "queues", "device", "current_task", "last_seen"]
    readonly_fields = [f.name for f in Worker._meta.fields]
