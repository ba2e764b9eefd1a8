"""`manage.py train_msunet`: a thin wrapper over `python -m lcz_model.train` (the package is the bridge)."""
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Train MSU-Net from an exported dataset package: progress bars, test metrics each epoch, an "
            "atomic checkpoint with a model card, a CSV log and a learning curve; --resume continues after "
            "an interruption. Every option of `python -m lcz_model.train --help` has the same meaning.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="dataset package folder (manage.py export_dataset)")
        parser.add_argument("--out", required=True, help="run folder")
        parser.add_argument("--variant", choices=["baseline", "psg", "psg_lsg", "full"], default="full")
        parser.add_argument("--encoder", default="swin_tiny")
        parser.add_argument("--encoder-checkpoint", default=None, help="local encoder weights (never downloaded)")
        parser.add_argument("--epochs", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=20)
        parser.add_argument("--img-size", type=int, default=None)
        parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        parser.add_argument("--resume", action="store_true")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--lr", type=float, default=None)
        parser.add_argument("--max-minutes", type=float, default=None)
        parser.add_argument("--eval-every", type=int, default=None,
                            help="evaluate on the test split every N epochs (always after the last)")
        parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        parser.add_argument("--model", dest="model_kwargs", action="append", default=None, metavar="KEY=VALUE",
                            help="an MSUNetConfig field, e.g. --model token_pool=all (repeatable)")

    def handle(self, *args, **o):
        from lcz_model.package import PackageError
        from lcz_model.train import parse_model_kwargs, train

        options = {k: v for k, v in o.items() if k in {
            "dataset", "out", "variant", "encoder", "encoder_checkpoint", "epochs", "batch_size", "img_size",
            "device", "resume", "seed", "lr", "max_minutes", "eval_every", "threads"}}
        options["progress"] = o["verbosity"] >= 1
        try:
            if o.get("model_kwargs"):
                items = o["model_kwargs"]
                options["model_kwargs"] = parse_model_kwargs([items] if isinstance(items, str) else items)
            run = train(options)
        except (PackageError, FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Run written to {run}"))
