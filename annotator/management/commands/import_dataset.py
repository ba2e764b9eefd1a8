from django.core.management.base import BaseCommand, CommandError

from annotator.export.importer import import_dataset
from lcz_model.package import PackageError

from ._common import campaign_or_error


class Command(BaseCommand):
    help = "Read a dataset package back: its blocks and labels become the campaign's (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("package")
        parser.add_argument("--campaign", required=True)

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        try:
            report = import_dataset(campaign, o["package"])
        except PackageError as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        self.stdout.write(self.style.SUCCESS(f"{report.created} blocks imported, {report.existing} already present."))
