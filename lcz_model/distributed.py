"""Several processes (GPUs or machines) training one model: the torchrun environment, the
process group and the few collectives the training loop needs.

``torchrun`` starts one process per GPU (or CPU worker) and gives each RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`setup` reads them and joins the process group
(NCCL on CUDA devices, gloo on CPU). Without those variables (a plain ``python -m
lcz_model.train``) nothing here starts anything: :func:`setup` returns a one-process
:class:`Dist` and every helper is a no-op, so single-process training is exactly what it was.

Plain torch (no Django), like the rest of ``lcz_model``.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Dist", "torchrun_env", "setup", "resolve_device", "is_main", "barrier",
           "all_reduce_mean", "all_reduce_max", "all_gather_objects", "cleanup"]


@dataclass
class Dist:
    """Where this process stands: its rank among ``world_size`` processes, its rank on this
    machine (``local_rank``), its device, and whether :func:`setup` started the process group
    (then :func:`cleanup` ends it)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's environment; None outside torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


def resolve_device(name: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """--device (auto, cpu, cuda, cuda:N) -> a torch device. Under torchrun, "auto" and "cuda"
    mean this process's GPU, cuda:LOCAL_RANK (one GPU per process)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but torch sees no CUDA device; use "
                               "--device cpu or auto")
        if distributed and dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def setup(device: str = "auto", timeout_minutes: float = 30.0) -> Dist:
    """Join torchrun's process group (once per process) and pick this rank's device.

    Outside torchrun (or with WORLD_SIZE 1): no process group, the device as asked. A group
    already started by the caller (e.g. a test) is used as it is and left to the caller."""
    env = torchrun_env()
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = env[2] if env else rank
        dev = resolve_device(device, local, world > 1)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return Dist(rank, world, local, dev, owns_group=False)
    if env is None or env[1] <= 1:
        return Dist(device=resolve_device(device))
    rank, world, local = env
    dev = resolve_device(device, local, True)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    # the timeout bounds how long ranks wait for each other (e.g. while rank 0 writes files)
    dist.init_process_group(backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=timeout_minutes),
                            **({"device_id": dev} if dev.type == "cuda" else {}))
    return Dist(rank, world, local, dev, owns_group=True)


def _on() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and logs."""
    return not _on() or dist.get_rank() == 0


def barrier() -> None:
    if _on():
        dist.barrier()


def _coll_device() -> torch.device:
    # NCCL reduces CUDA tensors only; gloo CPU tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values) -> list[float]:
    """The mean over ranks of each number in ``values`` (one collective); as given in one
    process."""
    vals = [float(v) for v in values]
    if not _on() or not vals:
        return vals
    t = torch.tensor(vals, dtype=torch.float64, device=_coll_device())
    dist.all_reduce(t)
    return (t / dist.get_world_size()).cpu().tolist()


def all_reduce_max(value: float) -> float:
    """The largest ``value`` over ranks (e.g. "has any rank passed its deadline")."""
    if not _on():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_coll_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; [obj] in one process."""
    if not _on():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup(d: Dist) -> None:
    """End the process group if :func:`setup` started it."""
    if d.owns_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
