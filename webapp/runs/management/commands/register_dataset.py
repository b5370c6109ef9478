"""`manage.py register_dataset NAME --kind imagefolder --root /data/x [--everyone]
[--user alice] [--group vision]`: register (or update) a dataset users choose by name; a
re-run sets who may use it (users and groups not named lose access)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webapp.runs.models import Dataset


class Command(BaseCommand):
    help = (
        "Register a dataset (its folder under PONAS_DATA_ROOTS, stored with its links resolved) "
        "that web and API users choose by name; run it again to change one: the --user and "
        "--group given then replace the earlier ones (anyone not named loses access)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="what users choose (config.dataset)")
        parser.add_argument("--kind", required=True, choices=Dataset.Kind.values)
        parser.add_argument("--root", required=True, help="the folder on the workers")
        parser.add_argument("--description", default="")
        parser.add_argument("--everyone", action="store_true", help="every user may use it")
        parser.add_argument("--user", action="append", default=[], help="may use it (repeat)")
        parser.add_argument("--group", action="append", default=[], help="may use it (repeat)")

    def handle(self, *args, name, kind, root, description, everyone, user, group, **options):
        users = list(get_user_model().objects.filter(username__in=user))
        groups = list(Group.objects.filter(name__in=group))
        missing = sorted(set(user) - {u.username for u in users}) + sorted(
            set(group) - {g.name for g in groups}
        )
        if missing:
            raise CommandError(f"no such users or groups: {', '.join(missing)}")
        dataset = Dataset.objects.filter(name=name).first() or Dataset(name=name)
        dataset.kind, dataset.root = kind, root
        dataset.description, dataset.everyone = description, everyone
        try:
            dataset.full_clean()
        except ValidationError as exc:
            raise CommandError(  # noqa: B904 (the validation message is the whole story)
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            )
        before = set()
        if dataset.pk is not None:
            before = {u.username for u in dataset.users.all()}
            before |= {f"group {g.name}" for g in dataset.groups.all()}
        dataset.save()
        # the list given is the list: whoever is not named (any more) loses access
        dataset.users.set(users)
        dataset.groups.set(groups)
        who = "everyone" if everyone else ", ".join([*user, *group]) or "nobody yet"
        line = f'dataset "{name}" ({kind}) registered; who may use it: {who}'
        revoked = sorted(before - set(user) - {f"group {g}" for g in group})
        if revoked:
            line += f"; access removed for: {', '.join(revoked)}"
        self.stdout.write(line)
