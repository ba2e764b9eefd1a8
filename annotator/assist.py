"""Assist, the review side of the model's predictions: acquisition scores and the active-learning
queue. A service home (see annotator.services).

Writes: `queue_next_batch` (assignments of an assisted round, the round marked assisted; audited).
Reads: `acquisition_scores`. Which suggestion an interpreter may see is `selectors.suggestion_for`
(blindness); the prediction job that stores the predictions is annotator.prediction_jobs.
"""
from __future__ import annotations

import hashlib

import numpy as np
from django.db import transaction

from . import selectors, tile_stamps
from .models import Assignment, AuditEvent, Campaign, Prediction
from .services import interpreter_load, pick_interpreters


# --- the active-learning queue --------------------------------------------------------------

def acquisition_scores(campaign: Campaign, model_version: str):
    """(block ids, scores, predicted splits) of blocks with no final label yet, by the campaign's strategy."""
    from lcz_model import acquisition

    rows = list(Prediction.objects.filter(campaign=campaign, model_version=model_version,
                                          block__final_permille__isnull=True)
                .order_by("block_id").values_list("block_id", "permille", "entropy", "bald", "margin"))
    if not rows:
        return np.zeros(0, int), np.zeros(0), np.zeros((0, 17))
    ids = np.array([r[0] for r in rows])
    splits = np.array([r[1] for r in rows], dtype=np.float64) / 1000.0
    strategy = campaign.acquisition_strategy
    if strategy == "random":
        seed = int(hashlib.sha256(f"{campaign.pk}:{model_version}".encode()).hexdigest()[:8], 16)
        scores = acquisition.random_scores(len(ids), seed)
    else:
        column = {"bald": 3, "entropy": 2, "margin": 4}[strategy]
        scores = np.array([r[column] for r in rows], dtype=np.float64)
    return ids, scores, splits


@transaction.atomic
def queue_next_batch(campaign: Campaign, *, k: int, round: int, per_block: int = 1, actor=None) -> list[int]:
    """Pick the k most useful unlabelled blocks (diversity-guarded) and assign them for `round`,
    with their score as priority; the round is marked assisted. Returns the block ids queued.

    Blindness: a block whose blind round is still open is queued only if the campaign allows it
    (`queue_open_blocks`), and then never to an interpreter who holds an open blind assignment of it.
    """
    from lcz_model.acquisition import select_batch

    if round in _blind_rounds_in_use(campaign):
        raise ValueError(f"round {round} already holds blind assignments; queue the assisted round as a new round.")
    if not campaign.active_model_version:
        raise ValueError(f"campaign {campaign.name!r} has no model predictions yet; run predict_blocks first.")
    _, load, rank = interpreter_load(campaign, round)
    ids, scores, splits = acquisition_scores(campaign, campaign.active_model_version)
    taken, live = selectors.round_holders(campaign, round)
    blind_open: dict[int, set[int]] = {}
    for block_id, user_id in selectors.open_blind_assignments(campaign).values_list("block_id", "interpreter_id"):
        blind_open.setdefault(block_id, set()).add(user_id)

    assignable = set(selectors.assignable_blocks(campaign)[0].values_list("id", flat=True))  # no edge blocks

    def eligible(block_id: int) -> bool:
        if live.get(block_id) or block_id not in assignable:  # a revoked assignment leaves a gap
            return False
        if block_id in blind_open and not campaign.queue_open_blocks:
            return False
        return any(u not in blind_open.get(block_id, ()) and u not in taken.get(block_id, ()) for u in load)

    exclude = [i for i, b in enumerate(ids) if not eligible(int(b))]
    chosen = select_batch(scores, splits, k=k, exclude=exclude) if len(ids) else []
    new = []
    for i in chosen:
        block_id = int(ids[i])
        exclude = blind_open.get(block_id, set()) | taken.get(block_id, set())
        for user_id in pick_interpreters(load, rank, per_block, exclude=exclude):
            new.append(Assignment(campaign=campaign, block_id=block_id, interpreter_id=user_id, round=round,
                                  priority=float(scores[i])))
    Assignment.objects.bulk_create(new, ignore_conflicts=True)
    tile_stamps.bump(campaign.pk)
    if round not in campaign.assisted_rounds:
        campaign.assisted_rounds = sorted({*campaign.assisted_rounds, round})
        campaign.save(update_fields=["assisted_rounds"])
    AuditEvent.objects.create(actor=actor, action="queue_batch", campaign=campaign,
                              after={"round": round, "blocks": [int(ids[i]) for i in chosen],
                                     "strategy": campaign.acquisition_strategy,
                                     "model_version": campaign.active_model_version})
    return [int(ids[i]) for i in chosen]


def _blind_rounds_in_use(campaign: Campaign) -> set[int]:
    rounds = set(Assignment.objects.filter(campaign=campaign).values_list("round", flat=True).distinct())
    return rounds - set(campaign.assisted_rounds or [])
