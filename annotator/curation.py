"""Curation writes: consensus and disputes when a block's interpreters have all submitted, and
reviewers' adjudications. The statistics themselves are in annotator.agreement (pure numpy)."""
from __future__ import annotations

import numpy as np
from django.contrib.auth.models import User
from django.db import transaction

from . import agreement, selectors
from .models import Adjudication, Assignment, AuditEvent, StreetBlock
from .splits import SplitError, parse_split


def curate_block(block: StreetBlock, round: int = 1) -> StreetBlock:
    """Set consensus, agreement and status (complete or disputed) from the submitted splits.

    Called inside the transaction of the save that submitted the block's last split.
    """
    splits = [a.annotation.permille for a in Assignment.objects.filter(
        block=block, round=round, status=Assignment.Status.SUBMITTED).select_related("annotation")]
    arr = np.asarray(splits, dtype=np.int64)[None, :, :]
    present = np.ones(arr.shape[:2], dtype=bool)
    block.consensus = [int(v) for v in agreement.consensus(arr, present)[0]]
    tv = float(agreement.pairwise_tv(arr, present)[0])
    block.agreement_tv = None if np.isnan(tv) else tv
    block.dominant_agrees = bool(agreement.dominant_agreement(arr, present)[0])
    is_disputed = bool(agreement.disputed(arr, present, tv_threshold=block.campaign.dispute_tv_threshold)[0])
    block.status = StreetBlock.Status.DISPUTED if is_disputed else StreetBlock.Status.COMPLETE
    block.final_permille = None if is_disputed else block.consensus
    block.save(update_fields=["consensus", "agreement_tv", "dominant_agrees", "status", "final_permille"])
    AuditEvent.objects.create(action="disputed" if is_disputed else "consensus", campaign_id=block.campaign_id,
                              block=block, after={"consensus": block.consensus, "tv": block.agreement_tv,
                                                  "dominant_agrees": block.dominant_agrees})
    return block


@transaction.atomic
def adjudicate(block: StreetBlock, reviewer: User, *, split: dict, reason: str,
               started_from: str = "consensus") -> Adjudication:
    """A reviewer sets the final split of a complete or disputed block, with a reason."""
    if not selectors.is_reviewer(reviewer, block.campaign):
        raise PermissionError("only reviewers of this campaign can adjudicate")
    block = StreetBlock.objects.select_for_update().get(pk=block.pk)
    if block.status not in (StreetBlock.Status.COMPLETE, StreetBlock.Status.DISPUTED,
                            StreetBlock.Status.ADJUDICATED):
        raise SplitError({"block": ["not every interpreter has submitted this block yet."]})
    if not reason or not reason.strip():
        raise SplitError({"reason": ["say why this split is the right one."]})
    permille = parse_split(split, require_total=True)
    before = {"status": block.status, "final_permille": block.final_permille}
    adjudication = Adjudication.objects.create(block=block, reviewer=reviewer, permille=permille,
                                               reason=reason.strip(), started_from=started_from)
    block.final_permille = permille
    block.status = StreetBlock.Status.ADJUDICATED
    block.save(update_fields=["final_permille", "status"])
    AuditEvent.objects.create(actor=reviewer, action="adjudicate", campaign_id=block.campaign_id, block=block,
                              before=before, after={"status": block.status, "final_permille": permille,
                                                    "reason": adjudication.reason, "started_from": started_from})
    return adjudication
