from django.core.management.base import BaseCommand, CommandError

from annotator.export.dataset import ExportError
from annotator.learning import RoundOptions, run_round

from ._common import campaign_or_error


class Command(BaseCommand):
    help = ("One active-learning round: export the labels, train MSU-Net (warm start from the last round), "
            "predict every block, rescore and queue the most useful blocks for an assisted round. "
            "Resumable: run it again after an interruption.")

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--epochs", type=int, default=10)
        parser.add_argument("--encoder", default="swin_micro")
        parser.add_argument("--img-size", type=int, default=128)
        parser.add_argument("--batch", type=int, default=20, help="blocks to queue for the next round")
        parser.add_argument("--per-block", type=int, default=1)
        parser.add_argument("--device", default="auto")
        parser.add_argument("--max-minutes", type=float, default=None)

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        opts = RoundOptions(epochs=o["epochs"], encoder=o["encoder"], img_size=o["img_size"], batch=o["batch"],
                            per_block=o["per_block"], device=o["device"], max_minutes=o["max_minutes"])
        try:
            run_round(campaign, opts, say=self.stdout.write)
        except (ExportError, ValueError, RuntimeError) as exc:
            raise CommandError(f"{exc} Run the command again once fixed: finished steps are kept.") from None
