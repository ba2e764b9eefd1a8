from django.core.management.base import BaseCommand, CommandError

from annotator import services

from ._common import campaign_or_error


class Command(BaseCommand):
    help = ("Spread the campaign's blocks over its interpreters, balanced, each block to N distinct "
            "interpreters. Existing assignments count: re-running only fills gaps. Edge blocks (cut by the "
            "boundary that closed them) only with --include-edge; blocks outside all imagery never.")

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--per-block", type=int, default=None,
                            help="Interpreters per block (default: the campaign's setting).")
        parser.add_argument("--round", type=int, default=1)
        parser.add_argument("--include-edge", action="store_true",
                            help="Also assign edge blocks (touching the imagery footprint or study-area boundary).")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        if o["per_block"] is not None and o["per_block"] < 1:
            raise CommandError("--per-block must be at least 1.")
        try:
            result = services.assign_blocks(campaign, per_block=o["per_block"], round=o["round"],
                                            include_edge=o["include_edge"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{result.created} new assignments."))
        if result.skipped_edge:
            self.stdout.write(f"{result.skipped_edge} edge blocks left out (they touch the boundary that closed "
                              "them); --include-edge assigns them too.")
        if result.skipped_outside_imagery:
            self.stderr.write(self.style.WARNING(
                f"{result.skipped_outside_imagery} blocks lie outside all of the campaign's imagery and were not "
                "assigned; import imagery that covers them (they are linked to it) and run again."))
        if result.blocks_short:
            self.stderr.write(self.style.WARNING(
                f"{result.blocks_short} blocks have fewer than {o['per_block'] or campaign.interpreters_per_block} "
                "interpreters: the campaign has too few. Add interpreters and run again."))
