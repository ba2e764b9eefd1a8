"""Shared bits of the annotator's management commands."""
from __future__ import annotations

from contextlib import contextmanager

from django.core.management.base import CommandError
from tqdm import tqdm

from annotator import selectors
from annotator.ingest import IngestError


def campaign_or_error(name: str):
    try:
        return selectors.campaign_by_name(name)
    except selectors.NotFound as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def ingest_errors():
    """Turn bad-input errors into CommandError (exit 1, the message, no traceback)."""
    try:
        yield
    except IngestError as exc:
        raise CommandError(f"{exc} Nothing was changed.") from None


class StepProgress:
    """A tqdm bar over named steps, for commands whose work is a short pipeline."""

    def __init__(self, steps: list[str], *, disable: bool = False):
        self.bar = tqdm(total=len(steps), unit="step", disable=disable, leave=False)

    def __call__(self, name: str) -> None:
        self.bar.set_description(name)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
