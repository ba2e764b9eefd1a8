import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotator import prediction_jobs, selectors
from annotator.models import PredictionJob

from ._common import campaign_or_error


class Command(BaseCommand):
    help = ("Pre-label a campaign's blocks with a trained model (Celery task predict_campaign) and follow "
            "its progress. Safe to re-run: blocks already predicted by this model are skipped.")

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--checkpoint", required=True, help="run folder of lcz_model.train, or its checkpoint.pt")
        parser.add_argument("--no-wait", action="store_true", help="enqueue and return")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to follow progress")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        try:
            _refuse_when_nothing_to_predict(campaign, prediction_jobs.model_version_of(o["checkpoint"]))
            job = prediction_jobs.start_prediction(campaign, o["checkpoint"])
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Job {job.pk}: model {job.model_version} over {job.total} blocks.")
        if o["no_wait"]:
            return
        deadline = time.monotonic() + o["timeout"]
        with tqdm(total=job.total, unit="block", disable=o["verbosity"] < 1) as bar:
            while True:
                job.refresh_from_db()
                p = prediction_jobs.job_progress(job)
                bar.n = p["done"]
                bar.refresh()
                if job.status in (PredictionJob.Status.DONE, PredictionJob.Status.FAILED):
                    break
                if time.monotonic() > deadline:
                    raise CommandError(f"job {job.pk} still running after {o['timeout']:g} s "
                                       f"({p['done']}/{p['total']}); it goes on in the workers.")
                time.sleep(1.0)
        if job.status == PredictionJob.Status.FAILED:
            raise CommandError(f"job {job.pk} failed: {job.error}. Re-run to complete the missing blocks.")
        self.stdout.write(self.style.SUCCESS(f"Job {job.pk} done: {p['done']}/{p['total']} blocks predicted."))


def _refuse_when_nothing_to_predict(campaign, model_version: str) -> None:
    """CommandError saying why, when the model would predict no block."""
    gap = selectors.prediction_gap(campaign, model_version)
    if gap["blocks"] == 0:
        why = "it has no blocks; import them with import_osm_blocks or import_blocks"
    elif gap["with_imagery"] == 0:
        why = (f"none of its {gap['blocks']} blocks lies on its imagery; import imagery that covers them "
               "(import_imagery links the blocks to it)")
    elif gap["to_predict"] == 0:
        why = f"model {model_version} has already predicted all {gap['with_imagery']} of its blocks with imagery"
    else:
        return
    raise CommandError(f"nothing to predict in campaign {campaign.name!r}: {why}.")
