"""``python manage.py taskstore_worker [MODULE:APP] [--queue Q]…``: the ``taskstore worker`` command, run
inside the Django project (settings, ``sys.path`` and ``INSTALLED_APPS`` as manage.py sets them up).

It hands its options to the CLI's own ``worker`` command, so both run one worker implementation: the same
signals, grace, logging and exit codes.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run a taskstore worker for an App of this project until SIGTERM or SIGINT."
    requires_system_checks = ()  # a worker starts at once; `check` is for manage.py

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "target", nargs="?", metavar="MODULE:APP", help="where the App lives [default: settings.TASKSTORE_APP]"
        )
        parser.add_argument("-q", "--queue", action="append", help="a queue to work (repeatable) [default: the App's]")
        parser.add_argument("-c", "--concurrency", type=int, help="tasks run at once [default: 10]")
        parser.add_argument("--prefetch", type=int, help="claimed tasks held ready beyond the running ones")
        parser.add_argument("--url", help="a store URL instead of the one the settings name")
        parser.add_argument("--grace", help="on SIGTERM/SIGINT, how long running tasks may finish [default: 30s]")
        parser.add_argument("--worker-id", help="[default: host-pid-random]")
        parser.add_argument("--archive-after", help="archive finished tasks this old [default: 7d]")
        parser.add_argument("--reap-every", help="how often to look for timed-out leases [default: 5s]")
        parser.add_argument(
            "--no-maintenance", action="store_true", help="do not run the reaper, archiver and scheduler here"
        )
        parser.add_argument("--log-level", help="debug, info, warning or error [default: info]")

    def handle(self, *args: Any, **options: Any) -> None:
        from taskstore.cli import main

        main(worker_argv(options))


def worker_argv(options: dict[str, Any]) -> list[str]:
    """The ``taskstore`` argv for these parsed options (only the ones given: the CLI keeps its defaults)."""
    target = options.get("target") or getattr(settings, "TASKSTORE_APP", None)
    if not target:
        raise CommandError("name the App (MODULE:APP, e.g. shop.tasks:app) or set TASKSTORE_APP in the settings")
    argv = ["worker", str(target)]
    for queue in options.get("queue") or ():
        argv += ["--queue", queue]
    for option in ("concurrency", "prefetch", "url", "grace", "worker_id", "archive_after", "reap_every", "log_level"):
        if options.get(option) is not None:
            argv += [f"--{option.replace('_', '-')}", str(options[option])]
    if options.get("no_maintenance"):
        argv.append("--no-maintenance")
    return argv
