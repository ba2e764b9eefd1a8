"""Speed benchmark of MSU-Net against its bare encoder (not a test).

    python -m experiments.bench [--encoder swin_tiny] [--device auto|cpu|cuda] [--batch 20]
                              [--infer-batch 64] [--steps N] [--compile] [--json PATH]

Prints
- inference blocks/s of the full model, one block = 1 global + ``--locals`` (4) local patches;
- training ms/block at ``--batch`` blocks per step, one block = 1 global + 1 local + 1 pure image,
  all three task losses, GradNorm-weighted backward and an AdamW step;
- the bare encoder on the same images (forward images/s; a train step on the same input with a
  trivial loss), and the overhead ratios (ours / bare).
On CUDA: bf16 autocast, channels_last, warm-up steps and torch.cuda.synchronize() around the
timed loop. Inputs are random (speed does not depend on content).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Callable

import torch

from lcz_model.classes import N_CLASSES
from lcz_model.encoders import ENCODERS, build_encoder
from lcz_model.msunet import build_model, count_parameters
from lcz_model.train import TrainConfig, make_gradnorm


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores, " \
           f"{torch.get_num_threads()} torch threads)"


def _timeit(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per call after ``warmup`` calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - t0) / steps


def run(encoder: str = "swin_tiny", device: str = "auto", batch: int = 20,
        infer_batch: int | None = None,
        steps: int | None = None, warmup: int | None = None, compile: bool = False,
        img_size: int | None = None, locals_per_block: int = 4, amp: str = "auto",
        fusion_dim: int = 256, log=print) -> dict:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    cuda = dev.type == "cuda"
    steps = steps or (20 if cuda else 3)
    infer_batch = infer_batch or (64 if cuda else 8)
    warmup = warmup if warmup is not None else (5 if cuda else 1)
    img = img_size or ENCODERS[encoder]["img_size"]
    use_bf16 = (amp == "bf16") or (amp == "auto" and cuda)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    torch.manual_seed(0)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16)

    def images(n):
        return torch.randn(n, 3, img, img, device=dev).contiguous(memory_format=fmt)

    model = build_model("full", encoder=encoder, img_size=img, fusion_dim=fusion_dim)
    model = model.to(dev, memory_format=fmt)
    bare = build_encoder(encoder, img_size=img).to(dev, memory_format=fmt)
    if compile:
        # GradNorm differentiates each task loss separately (retain_graph=True), which compiled
        # backward graphs with donated buffers refuse; turn donation off.
        import torch._functorch.config as functorch_config

        functorch_config.donated_buffer = False
        # fixed shapes (every timed batch has the same size): dynamic=False, the workaround for
        # the inductor error seen on the H100 with dynamic shapes
        model.compile(dynamic=False)
        bare.compile(dynamic=False)

    res: dict = {"device": _device_name(dev), "encoder": encoder, "img_size": img,
                 "bf16_autocast": use_bf16, "channels_last": cuda, "compile": compile,
                 "torch": torch.__version__, "params_full": count_parameters(model),
                 "params_encoder": count_parameters(bare), "steps": steps, "warmup": warmup,
                 "infer_batch": infer_batch, "train_batch": batch, "locals_per_block": locals_per_block}
    log(f"device: {res['device']}  torch {torch.__version__}  encoder {encoder} @ {img}px  "
        f"bf16={use_bf16} channels_last={cuda} compile={compile}")
    log(f"parameters: full model {res['params_full']:,}  bare encoder "
        f"{res['params_encoder']:,}")

    # --- inference --------------------------------------------------------------------------
    g = images(infer_batch)
    loc = images(infer_batch * locals_per_block).view(infer_batch, locals_per_block, 3, img, img)
    x_bare = images(infer_batch * (1 + locals_per_block))
    model.eval()
    bare.eval()
    # pure images fill the endmember bank once, as after training
    with torch.no_grad(), autocast():
        model.update_endmembers(torch.randn(N_CLASSES, model.encoder.out_channels, device=dev),
                                torch.arange(N_CLASSES, device=dev))

    def infer_model():
        with torch.inference_mode(), autocast():
            return model(g, loc)["abundances"]

    def infer_bare():
        with torch.inference_mode(), autocast():
            return bare(x_bare)

    t_inf = _timeit(infer_model, steps, warmup, dev)
    t_inf_bare = _timeit(infer_bare, steps, warmup, dev)
    res.update(infer_s_per_call=t_inf, infer_bare_s_per_call=t_inf_bare,
               infer_blocks_per_s=infer_batch / t_inf,
               infer_bare_images_per_s=infer_batch * (1 + locals_per_block) / t_inf_bare,
               infer_bare_blocks_per_s=infer_batch / t_inf_bare,
               infer_overhead=t_inf / t_inf_bare)
    log(f"inference ({infer_batch} blocks x (1 global + {locals_per_block} local)): "
        f"{res['infer_blocks_per_s']:.1f} blocks/s   bare encoder "
        f"{res['infer_bare_images_per_s']:.1f} images/s = {res['infer_bare_blocks_per_s']:.1f} "
        f"blocks/s   overhead x{res['infer_overhead']:.2f}")

    # --- training ---------------------------------------------------------------------------
    del g, loc, x_bare
    model.train()
    bare.train()
    fr = torch.softmax(torch.randn(batch, N_CLASSES, device=dev) * 3, dim=-1)
    tb = {"global": images(batch), "local": images(batch), "fractions": fr,
          "pure": images(batch), "pure_labels": torch.randint(0, N_CLASSES, (batch,), device=dev)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
    gn = make_gradnorm(model.tasks, model, TrainConfig())   # as training sets it up

    def train_model():
        opt.zero_grad(set_to_none=True)
        with autocast():
            losses = model.losses(tb)
        gn.backward(losses)
        opt.step()

    x_train = torch.cat([tb["global"], tb["local"], tb["pure"]])
    opt_b = torch.optim.AdamW(bare.parameters(), lr=1e-4, weight_decay=1e-2)

    def train_bare():
        opt_b.zero_grad(set_to_none=True)
        with autocast():
            loss = bare(x_train)[-1].float().mean()
        loss.backward()
        opt_b.step()

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    before = [p.detach().clone() for p in model.parameters()]
    t_tr = _timeit(train_model, steps, warmup, dev)
    res["train_changed_weights"] = any(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))
    del before
    if cuda:
        res["train_peak_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    t_tr_bare = _timeit(train_bare, steps, warmup, dev)
    res.update(train_s_per_step=t_tr, train_bare_s_per_step=t_tr_bare,
               train_ms_per_block=1000 * t_tr / batch, train_ms_per_step=1000 * t_tr,
               train_bare_ms_per_block=1000 * t_tr_bare / batch,
               train_overhead=t_tr / t_tr_bare, gradnorm_weights=gn.weights)
    log(f"training (batch {batch} blocks x (1 global + 1 local + 1 pure), GradNorm, AdamW): "
        f"{res['train_ms_per_block']:.2f} ms/block ({res['train_ms_per_step']:.1f} ms/step)   "
        f"bare encoder same input {res['train_bare_ms_per_block']:.2f} ms/block   "
        f"overhead x{res['train_overhead']:.2f}")
    return res


def epoch(package: str, encoder: str = "swin_micro", img_size: int = 64, batch: int = 20,
          device: str = "cpu", threads: int | None = None, num_workers: int = 0, log=print) -> dict:
    """One end-to-end training epoch of the full model on a package, as `train_msunet` runs it
    (the package's loader, augmentation, PSG pure images, GradNorm, AdamW), then the val/test
    evaluation. Returns the epoch's seconds, its training items and ms per block."""
    import tempfile

    from lcz_model.checkpoints import load_checkpoint
    from lcz_model.train import train

    with tempfile.TemporaryDirectory(prefix="epoch-bench-") as tmp:
        cfg = TrainConfig(dataset=package, out=tmp, variant="full", encoder=encoder, img_size=img_size,
                          batch_size=batch, epochs=1, device=device, progress=False, threads=threads,
                          num_workers=num_workers, lr=1e-3)
        train(cfg)
        ck = load_checkpoint(tmp)
    rec = ck["history"][0]
    items = ck["dataset"].get("train_items_per_epoch")
    res = {"package": package, "epoch_seconds": rec["seconds"], "steps": rec["steps"], "train_items": items,
           "batch": batch, "num_workers": num_workers}
    if items:
        res["epoch_ms_per_block"] = 1000 * rec["seconds"] / items
    log(f"end-to-end epoch ({package}, {items} training blocks, batch {batch}, {num_workers} loader "
        f"workers): {rec['seconds']:.1f} s" + (f" = {res['epoch_ms_per_block']:.2f} ms/block" if items else ""))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="swin_tiny", choices=sorted(ENCODERS))
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=20, help="training blocks per step")
    ap.add_argument("--infer-batch", type=int, default=None,
                    help="inference blocks per call (cuda 64, cpu 8)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (cuda 20, cpu 3)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (cuda 5, cpu 1)")
    ap.add_argument("--compile", action="store_true", help="torch.compile model and encoder")
    ap.add_argument("--img-size", type=int, default=None, help="default: the encoder's (256)")
    ap.add_argument("--locals", type=int, default=4, help="local patches per inference block")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"],
                    help="auto = bf16 autocast on cuda, fp32 on cpu")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--package", default=None, help="also time one end-to-end training epoch on this "
                    "dataset package (the real loader) against the network-only time for as many blocks")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of the epoch")
    ap.add_argument("--both", action="store_true", help="run eager, then compiled (one JSON with both)")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    modes = (False, True) if a.both else (a.compile,)
    out = {("compiled" if c else "eager"): run(a.encoder, a.device, a.batch, a.infer_batch, a.steps, a.warmup,
                                               c, a.img_size, a.locals, a.amp) for c in modes}
    if a.package:
        # train_msunet trains eagerly: its epoch is compared with the eager network-only step
        first = next(iter(out.values()))
        ep = epoch(a.package, a.encoder, first["img_size"], a.batch, a.device, a.threads, a.num_workers)
        if "eager" in out and "epoch_ms_per_block" in ep:
            ep["network_only_ms_per_block"] = out["eager"]["train_ms_per_block"]
            ep["epoch_over_network"] = ep["epoch_ms_per_block"] / ep["network_only_ms_per_block"]
            print(f"end-to-end epoch / network-only (eager, same batch): x{ep['epoch_over_network']:.2f}")
        out["epoch"] = ep
    res = out if len(out) > 1 else next(iter(out.values()))    # one run alone: its figures, flat
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
