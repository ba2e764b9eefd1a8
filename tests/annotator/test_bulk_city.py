"""annotator.bulk (many splits at once) leaves exactly what per-split saves leave, and the
city-scale benchmark (scripts/bench_city.py) runs end to end on a small city and prints every figure."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from annotator import services
from annotator.bulk import BulkError, submit_splits_bulk
from annotator.models import Annotation, Assignment, AuditEvent, StreetBlock
from lcz_model.classes import KEYS
from tests.conftest import TEST_ROADS, grid_boundary, grid_roads

ROOT = Path(__file__).resolve().parents[2]


def _team_campaign(name: str, tmp_path: Path, n: int = 5):
    """A campaign over a grid of (n-1)^2 blocks, interpreters i1..i4, three per block."""
    campaign, _ = services.create_campaign(name, city="Helsinki", imagery_licence="CC0 test imagery")
    roads, area = tmp_path / f"{name}-roads.geojson", tmp_path / f"{name}-area.geojson"
    grid_roads(n=n).to_file(roads)
    grid_boundary(n=n).to_file(area)
    call_command("import_osm_blocks", str(roads), campaign=name, boundary=str(area), verbosity=0, **TEST_ROADS)
    for i in range(1, 5):
        user, _ = services.ensure_user(f"i{i}", f"pw-i{i}-12345", role="interpreter")
        services.add_member(campaign, user, "interpreter")
    services.assign_blocks(campaign, per_block=3)
    return campaign


def _split_for(block_key: str, username: str) -> list[int]:
    """A deterministic split per (block, interpreter): agreeing, mixed or disputed by block."""
    rng = np.random.default_rng(zlib.crc32(block_key.encode()))
    kind = rng.integers(0, 3)
    k = int(username[1:])
    out = np.zeros(len(KEYS), dtype=int)
    if kind == 0:            # all agree exactly
        out[5] = 1000
    elif kind == 1:          # close mixes
        out[1], out[5] = 600 + 10 * k, 400 - 10 * k
    else:                    # the dominant class differs between interpreters: disputed
        out[k], out[10] = 700, 300
    return [int(v) for v in out]


def _state(campaign):
    return {b.block_key: (b.status, b.consensus, b.agreement_tv, b.dominant_agrees, b.final_permille)
            for b in StreetBlock.objects.filter(campaign=campaign)}


@pytest.mark.django_db
def test_bulk_submission_equals_per_block_saves(tmp_path):
    a = _team_campaign("per-save", tmp_path)
    b = _team_campaign("bulk", tmp_path)
    assert set(_state(a)) == set(_state(b)) and len(_state(a)) == 16

    def todo(campaign):
        # every assignment but one of the last block: that block stays in progress
        rows = list(Assignment.objects.filter(campaign=campaign).select_related("block", "interpreter")
                    .order_by("block__block_key", "interpreter__username"))
        return rows[:-1]

    for asg in todo(a):
        services.save_annotation(asg, asg.interpreter, request_id=uuid.uuid4(), version=None,
                                 split=dict(zip(KEYS, _split_for(asg.block.block_key, asg.interpreter.username))),
                                 submit=True)
    rows = todo(b)
    result = submit_splits_bulk(b, [(asg.pk, _split_for(asg.block.block_key, asg.interpreter.username))
                                    for asg in rows])
    assert result.submitted == len(rows) == 47
    assert result.curated == 15 and result.in_progress == 1
    sa, sb = _state(a), _state(b)
    assert sa == sb
    statuses = {s[0] for s in sb.values()}
    assert {StreetBlock.Status.COMPLETE, StreetBlock.Status.DISPUTED, StreetBlock.Status.IN_PROGRESS} <= statuses
    assert result.disputed == sum(s[0] == StreetBlock.Status.DISPUTED for s in sb.values())
    # same rows: annotations, submitted assignments, audit events per action
    for campaign in (a, b):
        assert Annotation.objects.filter(assignment__campaign=campaign, submitted_at__isnull=False).count() == 47
        assert Assignment.objects.filter(campaign=campaign, status=Assignment.Status.SUBMITTED).count() == 47
    actions = [sorted(AuditEvent.objects.filter(campaign=c, action__in=("submit", "consensus", "disputed"))
                      .values_list("action", flat=True)) for c in (a, b)]
    assert actions[0] == actions[1]
    # the last assignment can still be saved the normal way, and completes its block as a save would
    last_a, last_b = (Assignment.objects.filter(campaign=c).select_related("block", "interpreter")
                      .order_by("block__block_key", "interpreter__username").last() for c in (a, b))
    for last in (last_a, last_b):
        services.save_annotation(last, last.interpreter, request_id=uuid.uuid4(), version=None, submit=True,
                                 split=dict(zip(KEYS, _split_for(last.block.block_key, last.interpreter.username))))
    assert _state(a) == _state(b)


@pytest.mark.django_db
def test_bulk_refuses_bad_batches_and_writes_nothing(tmp_path):
    c = _team_campaign("bulk-bad", tmp_path, n=3)
    rows = list(Assignment.objects.filter(campaign=c).order_by("pk"))
    good = [1000] + [0] * 16
    with pytest.raises(Exception):  # a split that does not sum to 1000 (SplitError from parse_split)
        submit_splits_bulk(c, [(rows[0].pk, good), (rows[1].pk, [999] + [0] * 16)])
    assert not Annotation.objects.filter(assignment__campaign=c).exists()
    submit_splits_bulk(c, [(rows[0].pk, good)])
    with pytest.raises(BulkError, match="bulk submission only fills untouched"):
        submit_splits_bulk(c, [(rows[0].pk, good), (rows[1].pk, good)])
    assert Annotation.objects.filter(assignment__campaign=c).count() == 1
    other = _team_campaign("bulk-other", tmp_path, n=3)
    with pytest.raises(BulkError, match="is not one of"):
        submit_splits_bulk(other, [(rows[1].pk, good)])


@pytest.mark.django_db(transaction=True)  # the benchmark runs in other processes: its rows must be visible
def test_bench_city_runs_end_to_end_and_prints_every_figure(tmp_path, settings):
    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ, DATABASE_URL=f"postgis://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               MEDIA_ROOT=str(tmp_path / "media"), DJANGO_DEBUG="1")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_city.py"), "--blocks", "100", "--tiles", "2",
                           "--repeats", "3", "--saves", "1", "--out", str(tmp_path / "bench")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "FAILED" not in out, out
    assert "machine: " in out and " cores" in out and "PostgreSQL" in out
    table = out[out.index("figure "):]
    for fig in ("import", "next", "save", "agreement", "export", "maps", "dashboard", "tiles"):
        assert f"\n{fig} " in table, (fig, table)
    result = json.loads((tmp_path / "bench" / "bench_city-100.json").read_text())
    figures = result["figures"]
    assert result["campaign"]["blocks"] >= 90 and result["campaign"]["submitted_splits"] > 150
    assert figures["import"]["blocks_per_s"] > 0 and figures["export"]["blocks"] > 50
    assert figures["export"]["peak_rss_mb"] > 0 and figures["maps"]["shape"][0] > 0
    assert figures["save"]["n"] > 0 and figures["save"]["small"]["n"] > 0
    assert figures["next"]["p95_ms"] > 0 and figures["dashboard"]["p50_s"] > 0
