"""Bulk writes, a service home (see annotator.services): many submitted splits in one transaction.

For loading a whole city at once (the city-scale benchmark, migrations of labels made elsewhere):
`submit_splits_bulk` validates each split as a save does (`splits.parse_split`), writes the
Annotation rows, their assignments' status and their audit events with bulk_create, then brings
every touched block to the state a save would leave it in: the blocks whose interpreters have all
submitted are curated by `curation.curate_block` itself (so consensus, agreement and disputes are
exactly the per-block ones), the others become in progress. Blind rounds only (no model
suggestions to record); assignments that already hold a split are refused, nothing is written.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from . import selectors, tile_stamps
from .curation import curate_block
from .models import Annotation, Assignment, AuditEvent, Campaign, StreetBlock
from .services import _annotation_state
from .splits import parse_split
from lcz_model.classes import KEYS

BATCH = 2000


class BulkError(ValueError):
    """The batch cannot be applied as a whole; the message names the first offending assignment."""


@dataclass
class BulkResult:
    submitted: int
    curated: int        # blocks whose last split arrived (complete or disputed)
    disputed: int
    in_progress: int    # touched blocks still waiting for splits


@transaction.atomic
def submit_splits_bulk(campaign: Campaign, splits: Iterable[tuple[int, Sequence[int]]], *,
                       confidence: int | None = None, round: int = 1) -> BulkResult:
    """Submit (assignment id, 17 per-mille integers) pairs of `campaign`'s blind `round` at once."""
    if round in (campaign.assisted_rounds or []):
        raise BulkError(f"round {round} is assisted; bulk submission is for blind rounds only.")
    if confidence is not None and not 1 <= int(confidence) <= 5:
        raise BulkError("confidence must be 1..5.")
    wanted = {}
    for assignment_id, permille in splits:
        # the one validation rule of a split (17 per-mille integers summing to 1000)
        wanted[int(assignment_id)] = parse_split(dict(zip(KEYS, permille)), require_total=True)
    if not wanted:
        return BulkResult(0, 0, 0, 0)
    assignments = {a.pk: a for a in Assignment.objects.select_for_update().filter(pk__in=wanted).only(
        "pk", "campaign_id", "block_id", "interpreter_id", "round", "status")}
    interpreters = set(selectors.interpreters_of(campaign).values_list("pk", flat=True))
    for pk in wanted:
        a = assignments.get(pk)
        if a is None or a.campaign_id != campaign.pk or a.round != round:
            raise BulkError(f"assignment {pk} is not one of campaign {campaign.name!r}'s in round {round}.")
        if a.status != Assignment.Status.TODO:
            raise BulkError(f"assignment {pk} is {a.status}; bulk submission only fills untouched assignments.")
        if a.interpreter_id not in interpreters:
            raise BulkError(f"assignment {pk}: its interpreter is no longer on the campaign.")
    now = timezone.now()
    ordered = sorted(wanted)
    annotations = [Annotation(assignment_id=pk, permille=wanted[pk], confidence=confidence, flags=[],
                              comment="", version=1, submitted_at=now) for pk in ordered]
    Annotation.objects.bulk_create(annotations, batch_size=BATCH)  # PostgreSQL returns the new ids
    for i in range(0, len(ordered), BATCH):
        Assignment.objects.filter(pk__in=ordered[i:i + BATCH]).update(status=Assignment.Status.SUBMITTED)
    tile_stamps.bump(campaign.pk)   # the interpreters' map statuses
    AuditEvent.objects.bulk_create(
        [AuditEvent(actor_id=assignments[a.assignment_id].interpreter_id, action="submit", campaign_id=campaign.pk,
                    block_id=assignments[a.assignment_id].block_id, annotation=a, before=None,
                    after=_annotation_state(a)) for a in annotations], batch_size=BATCH)
    curated, disputed, waiting = _settle_blocks(campaign, sorted({a.block_id for a in assignments.values()}), round)
    return BulkResult(submitted=len(ordered), curated=curated, disputed=disputed, in_progress=waiting)


def _settle_blocks(campaign: Campaign, block_ids: list[int], round: int) -> tuple[int, int, int]:
    """What services' save does per block after a submission, for many blocks: curate the blocks
    whose live assignments are all submitted (at least interpreters_per_block), mark the rest in progress."""
    needed = campaign.interpreters_per_block
    settled = (StreetBlock.Status.DISPUTED, StreetBlock.Status.ADJUDICATED)
    ready, waiting = [], []
    for i in range(0, len(block_ids), BATCH):
        counts = (selectors.live_assignments(campaign, round).filter(block_id__in=block_ids[i:i + BATCH])
                  .values("block_id").annotate(n=Count("pk"),
                                                done=Count("pk", filter=Q(status=Assignment.Status.SUBMITTED))))
        for row in counts:
            (ready if row["done"] >= needed and row["n"] == row["done"] else waiting).append(row["block_id"])
    curated = disputed = 0
    blocks = StreetBlock.objects.select_for_update().filter(pk__in=ready).exclude(status__in=settled).order_by("pk")
    for block in blocks.iterator(chunk_size=BATCH):
        block.campaign = campaign  # curate_block reads the campaign's threshold; no query per block
        block = curate_block(block, round=round)
        curated += 1
        disputed += block.status == StreetBlock.Status.DISPUTED
    for i in range(0, len(waiting), BATCH):
        (StreetBlock.objects.filter(pk__in=waiting[i:i + BATCH]).exclude(status__in=settled)
         .exclude(status=StreetBlock.Status.IN_PROGRESS).update(status=StreetBlock.Status.IN_PROGRESS))
    return curated, disputed, len(waiting)
