from django.core.management.base import BaseCommand

from annotator import services


class Command(BaseCommand):
    help = "Create an annotation campaign (idempotent: an existing campaign is left as it is)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--city", required=True)
        parser.add_argument("--description", default="")
        parser.add_argument("--imagery-licence", default="", help="Licence text of the imagery, as given.")
        parser.add_argument("--imagery-attribution", default="")
        parser.add_argument("--per-block", type=int, default=3, help="Interpreters per block (default 3).")

    def handle(self, *args, **o):
        campaign, created = services.create_campaign(
            o["name"], city=o["city"], description=o["description"], imagery_licence=o["imagery_licence"],
            imagery_attribution=o["imagery_attribution"], interpreters_per_block=o["per_block"],
        )
        self.stdout.write(f"{'Created' if created else 'Exists:'} campaign {campaign.name!r} (id {campaign.pk}).")
