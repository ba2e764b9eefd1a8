"""Curation, a service home (see annotator.services).

Writes: consensus and disputes when a block's interpreters have all submitted (`curate_block`,
inside the save of the last split), reviewers' adjudications (`adjudicate`, idempotent by request
id through annotator.idempotency). The statistics themselves are in annotator.agreement (pure numpy).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import User
from django.db import transaction

from . import agreement, selectors, tile_stamps, verdict_records
from .idempotency import applied_before, request_digest
from .models import Adjudication, Assignment, AuditEvent, StreetBlock
from .splits import SplitError, parse_split


def curate_block(block: StreetBlock, round: int = 1) -> StreetBlock:
    """Set consensus, agreement and status (complete or disputed) from the submitted verdicts.

    Called inside the transaction of the save that submitted the block's last verdict. Can't-label
    verdicts (skips) count as submitted, but consensus and TV come from the labelled splits only;
    when fewer than a majority of the verdicts are labelled (with 3: 0 or 1), the block is disputed.
    """
    submitted = list(Assignment.objects.filter(block=block, round=round, status=Assignment.Status.SUBMITTED)
                     .select_related("annotation").order_by("id"))
    verdicts = [(a.annotation.permille, a.annotation.skip_reason) for a in submitted]
    block.verdicts = verdict_records.pack((a.interpreter_id, a.annotation.submitted_at, a.annotation.skip_reason,
                                           a.annotation.permille) for a in submitted)
    block.verdicts_round = round
    splits = [p for p, skip in verdicts if not skip]
    n_skipped = len(verdicts) - len(splits)
    skip_disputed = 2 * len(splits) <= len(verdicts) and n_skipped > 0   # no labelled majority
    if splits:
        arr = np.asarray(splits, dtype=np.int64)[None, :, :]
        present = np.ones(arr.shape[:2], dtype=bool)
        block.consensus = [int(v) for v in agreement.consensus(arr, present)[0]]
        tv = float(agreement.pairwise_tv(arr, present)[0])
        block.dominant_agrees = bool(agreement.dominant_agreement(arr, present)[0])
        is_disputed = skip_disputed or bool(
            agreement.disputed(arr, present, tv_threshold=block.campaign.dispute_tv_threshold)[0])
    else:  # every verdict is a skip: nothing to average
        block.consensus, tv, block.dominant_agrees, is_disputed = None, float("nan"), None, True
    block.agreement_tv = None if np.isnan(tv) else tv
    block.status = StreetBlock.Status.DISPUTED if is_disputed else StreetBlock.Status.COMPLETE
    block.final_permille = None if is_disputed else block.consensus
    block.save(update_fields=["consensus", "agreement_tv", "dominant_agrees", "status", "final_permille",
                              "verdicts", "verdicts_round"])
    tile_stamps.bump(block.campaign_id)
    after = {"consensus": block.consensus, "tv": block.agreement_tv, "dominant_agrees": block.dominant_agrees}
    if n_skipped:
        after.update(skipped=n_skipped, labelled=len(splits), disputed_by_skips=skip_disputed)
    AuditEvent.objects.create(action="disputed" if is_disputed else "consensus", campaign_id=block.campaign_id,
                              block=block, after=after)
    return block


STARTS = ("scratch", "consensus", "final")  # besides the id of one of the block's submitted assignments


@dataclass
class AdjudicateResult:
    adjudication: Adjudication
    replayed: bool  # True: this request id was already applied; nothing changed


@transaction.atomic
def adjudicate(block: StreetBlock, reviewer: User, *, split: dict, reason: str,
               started_from: str = "consensus", request_id=None) -> AdjudicateResult:
    """A reviewer sets the final split of a complete or disputed block, with a reason.

    Idempotent by `request_id` like a save: the same id and body replays, another body is refused."""
    if not selectors.is_reviewer(reviewer, block.campaign):
        raise PermissionError("only reviewers of this campaign can adjudicate")
    if not selectors.may_see_block_labels(reviewer, block):
        raise PermissionError("you still have to label this block blind; another reviewer must adjudicate it")
    block = StreetBlock.objects.select_for_update().get(pk=block.pk)
    if block.status not in (StreetBlock.Status.COMPLETE, StreetBlock.Status.DISPUTED,
                            StreetBlock.Status.ADJUDICATED):
        raise SplitError({"block": ["not every interpreter has submitted this block yet."]})
    if not isinstance(reason, str) or not reason.strip():
        raise SplitError({"reason": ["say why this split is the right one."]})
    permille = parse_split(split, require_total=True)
    starts = {*STARTS, *(str(a.pk) for a in selectors.block_splits(block) if not a.annotation.skip_reason)}
    if started_from not in starts:
        raise SplitError({"started_from": [f"must be one of {', '.join(sorted(starts))}."]})
    digest = request_digest("adjudicate", block.pk, {"permille": permille, "reason": reason.strip(),
                                                     "started_from": started_from})
    if request_id is not None:
        done = applied_before(reviewer, request_id, digest)
        if done is not None:
            return AdjudicateResult(Adjudication.objects.get(pk=done.after["adjudication"]), replayed=True)
    before = {"status": block.status, "final_permille": block.final_permille}
    adjudication = Adjudication.objects.create(block=block, reviewer=reviewer, permille=permille,
                                               reason=reason.strip(), started_from=started_from)
    block.final_permille = permille
    block.status = StreetBlock.Status.ADJUDICATED
    block.save(update_fields=["final_permille", "status"])
    tile_stamps.bump(block.campaign_id)
    AuditEvent.objects.create(actor=reviewer, action="adjudicate", campaign_id=block.campaign_id, block=block,
                              request_id=request_id, request_digest=digest if request_id is not None else "",
                              before=before, after={"status": block.status, "final_permille": permille,
                                                    "reason": adjudication.reason, "started_from": started_from,
                                                    "adjudication": adjudication.pk})
    return AdjudicateResult(adjudication, replayed=False)
