"""`manage.py train_msunet`: a thin wrapper over `python -m lcz_model.train` (the package is the bridge)."""
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
        from lcz_model.package import PackageError
        from lcz_model.train import config_from_args, train, train_options

        dests = {dest for *_, dest in train_options()}
        try:
            cfg = config_from_args({k: v for k, v in options.items() if k in dests})
            cfg.progress = cfg.progress and options["verbosity"] >= 1
            run = train(cfg)
        except (PackageError, FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Run written to {run}"))
