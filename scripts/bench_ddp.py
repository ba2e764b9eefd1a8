"""Benchmark (not a test): MSU-Net training step time at 1 and 2 processes (DDP, gloo) on CPU,
on the same global batch.

For each process count N it launches `torchrun --standalone --nproc-per-node N` of this script
(N = 1: no process group, today's single-process path), trains a synthetic package (made once
under var/bench-ddp/) for --epochs epochs with GradNorm on, and reports the last epoch (the
first one pays for warm-up): ms per step (one global batch) and ms per block. Every process
runs one torch thread, so 2 processes use 2 cores; "1 process, 2 threads" is the fair
single-process baseline on the same 2 cores.

    .venv/bin/python scripts/bench_ddp.py [--encoder swin_micro] [--img-size 128] [--batch-size 16]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = ROOT / "var" / "bench-ddp"


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}; {os.cpu_count()} logical CPUs; {platform.system()} {platform.release()}; "
            f"python {platform.python_version()}; torch {torch.__version__}; load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (other users' work slows every row)")


def worker(a) -> None:
    """One rank: train, and (rank 0) write the last epoch's timing to a.result."""
    from lcz_model.train import TrainConfig, train

    records = []
    cfg = TrainConfig(dataset=str(a.pkg), out=str(a.out), variant=a.variant, encoder=a.encoder,
                      epochs=a.epochs, batch_size=a.batch_size, img_size=a.img_size, device="cpu",
                      progress=False, threads=a.threads, eval_every=10_000,
                      augment={"scope": "rare", "rare_oversample": 1})
    train(cfg, callbacks=[lambda e, rec: records.append(rec)])
    if int(os.environ.get("RANK", "0")) == 0:
        rec = records[-1]
        items = json.loads((Path(a.out) / "model_card.json").read_text())["dataset"][
            "train_items_per_epoch"]
        Path(a.result).write_text(json.dumps({"seconds": rec["seconds"], "steps": rec["steps"],
                                              "items": items}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="full")
    ap.add_argument("--encoder", default="swin_micro")
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16, help="the GLOBAL batch")
    ap.add_argument("--blocks", type=int, default=128, help="blocks in the synthetic package")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pkg", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return 0

    from fixtures.synthetic_package import write_synthetic_package

    pkg = WORK / f"pkg-{a.blocks}-{a.img_size}"
    if not pkg.exists():
        write_synthetic_package(pkg, n_blocks=a.blocks, seed=0, test_fraction=0.25,
                                size=a.img_size)
    print(f"machine: {_machine()}")
    print(f"model: {a.variant} / {a.encoder} / {a.img_size} px, GradNorm on; global batch "
          f"{a.batch_size}; {a.blocks} blocks (synthetic); last of {a.epochs} epochs timed")
    base = None
    for procs, threads in ((1, 1), (1, 2), (2, 1)):
        out, result = WORK / f"run-{procs}x{threads}", WORK / f"result-{procs}x{threads}.json"
        shutil.rmtree(out, ignore_errors=True)
        result.unlink(missing_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(procs), str(Path(__file__).resolve()), "--worker",
               "--pkg", str(pkg), "--out", str(out), "--result", str(result),
               "--threads", str(threads), "--variant", a.variant, "--encoder", a.encoder,
               "--img-size", str(a.img_size), "--batch-size", str(a.batch_size),
               "--epochs", str(a.epochs)]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stdout[-2000:], p.stderr[-4000:], file=sys.stderr)
            return 1
        r = json.loads(result.read_text())
        ms_step = 1000 * r["seconds"] / r["steps"]
        ms_block = 1000 * r["seconds"] / r["items"]
        base = base or ms_step
        what = f"{procs} process{'es' if procs > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
        what += " (DDP, gloo)" if procs > 1 else " (no process group)"
        print(f"{what:38s} {ms_step:8.1f} ms/step  "
              f"{ms_block:7.1f} ms/block  ({r['steps']} steps of {a.batch_size} blocks, "
              f"{r['items']} blocks; speed-up vs 1x1 {base / ms_step:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
