from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from containers.models import DockerHost
from containers.services import hosts_ensure_default, servers_sync


class Command(BaseCommand):
    help = (
        "Reconcile the database with what each Docker engine really runs: containers that vanished, "
        "changed state, or were started by hand with a server's labels and name."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", action="append", default=[], help="Only this host (by name); repeatable.")

    def handle(self, *args: Any, host: list[str], **options: Any) -> None:
        hosts_ensure_default()
        hosts = DockerHost.objects.filter(enabled=True)
        if host:
            hosts = hosts.filter(name__in=host)
            missing = set(host) - set(hosts.values_list("name", flat=True))
            if missing:
                raise CommandError(f"No enabled host named {', '.join(sorted(missing))}.")
        reports = servers_sync(hosts=hosts)
        for report in reports:
            if not report.reachable:
                self.stdout.write(self.style.WARNING(f"{report.host}: unreachable ({report.error})"))
                continue
            line = f"{report.host}: {report.changed} changed, {report.vanished} vanished, {report.adopted} linked"
            if report.unknown:
                line += f", {len(report.unknown)} labelled containers of no known server"
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(f"Synced {len(reports)} hosts."))
