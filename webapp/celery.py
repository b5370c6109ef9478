"""The Celery app. Workers: `celery -A webapp worker` takes both queues (``default``, ``gpu``);
`-Q gpu` only the heavy work (see docs/service.md).

Configuration comes from Django settings (``CELERY_*``); tasks live in the ``tasks`` package.
"""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery(
    "webapp",
    include=[
        "tasks.registry",
        "tasks.search",
        "tasks.deploy",
        "tasks.profile",
        "tasks.audit",
        "tasks.watchdog",
    ],
)
app.config_from_object("django.conf:settings", namespace="CELERY")


@worker_init.connect
def _limit_torch_threads(**_) -> None:
    # Several CPU workers on one machine: PONAS_TORCH_THREADS=1 each avoids oversubscription.
    if os.environ.get("PONAS_TORCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["PONAS_TORCH_THREADS"]))
