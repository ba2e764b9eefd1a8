"""One rank of the DDP tests, started by torchrun (tests/lcz_model_ddp/test_ddp.py):

    python -m torch.distributed.run --standalone --nproc-per-node 2 \
        -m tests.lcz_model_ddp.ddp_worker CONFIG.json RECORD_DIR [--stop-after EPOCH]

Runs lcz_model.train.train on the TrainConfig in CONFIG.json exactly as the CLI would (the
process group comes from torchrun's environment), and records into RECORD_DIR, per rank:
which run files it wrote (writes-rank<R>.txt) and which training items (plan positions) it
loaded in each epoch (items-rank<R>.json). --stop-after E raises out of training after epoch
E, as an interruption would.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import lcz_model.train as lcz_train
from lcz_model.data import BlockDataset


class Stop(Exception):
    pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("record")
    ap.add_argument("--stop-after", type=int, default=None)
    a = ap.parse_args()
    rank = int(os.environ["RANK"])
    record = Path(a.record)
    record.mkdir(parents=True, exist_ok=True)

    # record every run-file write of this rank (train.py writes through atomic_write_bytes)
    write = lcz_train.atomic_write_bytes

    def recording_write(path, data, **kw):
        with open(record / f"writes-rank{rank}.txt", "a") as f:
            f.write(Path(path).name + "\n")
        return write(path, data, **kw)
    lcz_train.atomic_write_bytes = recording_write

    # record which training items this rank loads, per epoch
    items: dict[int, list[int]] = {}
    getitem = BlockDataset.__getitem__

    def recording_getitem(self, i):
        if self.train:
            items.setdefault(self.epoch, []).append(int(i))
        return getitem(self, i)
    BlockDataset.__getitem__ = recording_getitem

    def stop(epoch, rec):
        if a.stop_after is not None and epoch >= a.stop_after:
            raise Stop

    cfg = lcz_train.TrainConfig.from_any(json.loads(Path(a.config).read_text()))
    try:
        lcz_train.train(cfg, callbacks=[stop])
    except Stop:
        pass
    (record / f"items-rank{rank}.json").write_text(json.dumps(items))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
