from pathlib import Path

from django.db import migrations


def store_resolved_roots(apps, schema_editor):
    """A dataset's folder is stored with its links resolved (re-pointing one later no longer
    moves the dataset: workers check it as a run starts); rows stored before, as given."""
    Dataset = apps.get_model("runs", "Dataset")
    for dataset in Dataset.objects.all():
        resolved = str(Path(dataset.root).expanduser().resolve())
        if resolved != dataset.root:
            Dataset.objects.filter(pk=dataset.pk).update(root=resolved)


class Migration(migrations.Migration):
    dependencies = [("runs", "0012_deployment_queue_score_stderr")]

    operations = [migrations.RunPython(store_resolved_roots, migrations.RunPython.noop)]
