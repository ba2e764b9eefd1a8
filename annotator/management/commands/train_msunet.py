"""`manage.py train_msunet`: a thin wrapper over `python -m lcz_model.train` (the package is the bridge)."""
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Train MSU-Net from an exported dataset package: progress bars, test metrics each epoch, an "
            "atomic checkpoint with a model card, a CSV log and a learning curve; --resume continues after "
            "an interruption. The options are those of `python -m lcz_model.train` (one declaration, "
            "lcz_model.train.TrainConfig).")

    def add_arguments(self, parser):
        from lcz_model.train import add_train_arguments

        add_train_arguments(parser)

    def handle(self, *args, **options):
        from lcz_model.distributed import torchrun_env
        from lcz_model.package import PackageError
        from lcz_model.train import config_from_args, train, train_options

        from annotator import media

        dests = {dest for *_, dest in train_options()}
        env = torchrun_env()
        main_rank = env is None or env[0] == 0   # under torchrun every rank runs this command
        try:
            cfg = config_from_args({k: v for k, v in options.items() if k in dests})
            cfg.progress = cfg.progress and options["verbosity"] >= 1
            # object storage (annotator/media.py): a package at s3://... (or media:KEY) is downloaded once
            # into PACKAGE_CACHE_DIR; a run for s3://... is trained in a temp folder and uploaded at the end
            dataset = media.resolve_target(cfg.dataset)
            cfg.dataset = str(media.local_package(dataset) if isinstance(dataset, media.S3Location) else dataset)
            out = media.resolve_target(cfg.out)
            if isinstance(out, media.S3Location):
                if cfg.resume:
                    raise ValueError("--resume needs a local --out folder (a run in object storage is uploaded "
                                     "only when it ends)")
                if media.has_prefix(out):   # every rank checks before training starts: none has uploaded yet
                    raise ValueError(f"{out.url} already exists; choose a new run key")
                with tempfile.TemporaryDirectory(prefix="lcz-run-") as tmp:
                    cfg.out = str(Path(tmp) / "run")
                    written = train(cfg)
                    if main_rank:   # only rank 0 wrote the run
                        media.put_tree(written, out, last=("model_card.json",))
                run = out.url
            else:
                cfg.out = str(out)
                run = train(cfg)
        except (PackageError, FileNotFoundError, ValueError, media.MediaUnavailable) as exc:
            raise CommandError(str(exc)) from None
        if main_rank:
            self.stdout.write(self.style.SUCCESS(f"Run written to {run}"))
