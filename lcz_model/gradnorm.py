"""GradNorm: adaptive loss balancing for multi-task training (Chen et al., ICML 2018).

For tasks i with losses L_i and weights w_i (sum w_i = T, the number of tasks), measured on
the last shared layer W:

    G_i   = || grad_W (w_i L_i) ||_2 = w_i || grad_W L_i ||_2
    Lt_i  = L_i / L_i(0)                     (loss ratio to the task's first loss)
    r_i   = Lt_i / mean_j Lt_j               (relative inverse training rate)
    L_grad = sum_i | G_i - mean_j(G_j) * r_i^alpha |      (target treated as a constant)

The network is updated with sum_i w_i L_i; the weights w are updated by gradient descent on
L_grad and renormalised so that sum w_i = T.

Because G_i is linear in w_i and the target is a constant, dL_grad/dw_i =
sign(G_i - target_i) * ||grad_W L_i||: the per-task gradient norms are needed only as numbers,
so no second-order (create_graph) backward is required.

DECISION: the weights have their own Adam optimiser (lr 0.025 as in the paper's examples);
weights are clamped at >= 1e-3 before renormalising. A task whose loss is exactly zero this
step (e.g. no pure blocks in the batch) or whose gradient at W vanishes gets no GradNorm gradient
that step (Adam momentum and the renormalisation still act on it); its L_i(0) is recorded the
first time it is active.

Several processes (DistributedDataParallel, ``distributed=True``): each rank holds 1/W of the
global batch, so its losses and its per-task gradients at W are its shard's. The ranks must
agree on the weights, and those should be the ones a single process computes on the whole
batch; so, per step, the loss values L_i are averaged over ranks (one small all-reduce) and the
per-task gradients at W, grad_W L_i, are averaged over ranks before their norms are taken (one
all-reduce of T x |W| numbers, T the task count: about 3 x 14 M floats for swin_tiny's last
stage, the same order as DDP's own gradient all-reduce). With equal shard sizes the mean of the
shards' mean losses is the global batch's mean loss, so both averages are exactly the
single-process values (up to float rounding): every rank then makes the same weight update
(the new weights are also broadcast from rank 0, so rounding can never make them drift apart).
Averaging the per-rank norms instead would be cheaper but biased (the mean of norms exceeds the
norm of the mean). The per-task gradients come from ``torch.autograd.grad`` with explicit
inputs, which does not fire DDP's gradient hooks, so DDP still sees exactly one backward (of
sum_i w_i L_i) per step.

With torch.compile, set ``torch._functorch.config.donated_buffer = False``: the per-task
gradients need ``retain_graph=True``, which compiled backward graphs with donated buffers refuse.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch


class GradNorm:
    def __init__(self, task_names: Sequence[str], shared_params: Iterable[torch.nn.Parameter],
                 alpha: float = 1.5, lr: float = 0.025, min_weight: float = 1e-3,
                 distributed: bool = False):
        self.task_names = list(task_names)
        if not self.task_names:
            raise ValueError("GradNorm needs at least one task")
        self.shared_params = [p for p in shared_params if p.requires_grad]
        if not self.shared_params:
            raise ValueError("GradNorm needs the trainable parameters of the last shared layer")
        self.alpha = float(alpha)
        self.min_weight = float(min_weight)
        # average losses and shared-layer gradients over the default process group (see above)
        self.distributed = bool(distributed)
        n = len(self.task_names)
        self.w = torch.ones(n, dtype=torch.float32, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.w], lr=lr)
        self.initial_losses = torch.full((n,), float("nan"))
        self.last_grad_norms = torch.zeros(n)
        self.steps = 0

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def weights(self) -> dict[str, float]:
        return {t: float(v) for t, v in zip(self.task_names, self.w.detach())}

    def backward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted backward of sum_i w_i L_i (gradients land in .grad; the caller steps its own
        optimiser) and one GradNorm update of the weights. Returns the weighted total (detached).
        """
        missing = [t for t in self.task_names if t not in losses]
        if missing:
            raise KeyError(f"GradNorm: losses lack tasks {missing}; got {sorted(losses)}")
        ls = [losses[t] for t in self.task_names]
        w_now = self.w.detach().clone().to(ls[0].device)  # w changes in place below
        total = sum(w_now[i] * ls[i] for i in range(self.n_tasks))

        if self.n_tasks > 1:
            self._update_weights(ls)
        total.backward()
        self.steps += 1
        return total.detach()

    def _update_weights(self, ls: list[torch.Tensor]) -> None:
        n = self.n_tasks
        if self.distributed and self._world() > 1:
            values, norms = self._global_values_and_norms(ls)
        else:
            values = torch.stack([l.detach().float().cpu() for l in ls])
            norms = torch.zeros(n)
            for i, l in enumerate(ls):
                if not l.requires_grad or float(values[i]) == 0.0:
                    continue
                grads = torch.autograd.grad(l, self.shared_params, retain_graph=True,
                                            allow_unused=True)
                sq = [g.detach().float().pow(2).sum() for g in grads if g is not None]
                if sq:
                    norms[i] = torch.stack(sq).sum().sqrt().cpu()
        active = (values != 0) & (norms > 0) & torch.isfinite(values) & torch.isfinite(norms)
        first = active & torch.isnan(self.initial_losses)
        self.initial_losses[first] = values[first]
        self.last_grad_norms = norms
        if int(active.sum()) < 2:
            return
        w = self.w.detach()
        g = w * norms                                               # G_i
        ratio = values / self.initial_losses                        # Lt_i
        r = ratio / ratio[active].mean()
        target = g[active].mean() * r.pow(self.alpha)
        grad = torch.sign(g - target) * norms                       # dL_grad / dw_i
        grad[~active] = 0.0
        self.optimizer.zero_grad(set_to_none=False)
        self.w.grad = grad.to(self.w.dtype)
        self.optimizer.step()
        with torch.no_grad():
            self.w.clamp_(min=self.min_weight)
            self.w.mul_(n / self.w.sum())
        if self.distributed and self._world() > 1:
            self._broadcast_weights()

    # -- several processes ---------------------------------------------------------------------
    @staticmethod
    def _world() -> int:
        import torch.distributed as dist

        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def _coll_device(self, like: torch.Tensor) -> torch.device:
        import torch.distributed as dist

        return like.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def _global_values_and_norms(self, ls: list[torch.Tensor]):
        """The whole global batch's loss values and per-task gradient norms at W: shard values
        and shard gradients averaged over the ranks (every rank takes the same path)."""
        import torch.distributed as dist

        world = dist.get_world_size()
        dev = self._coll_device(self.shared_params[0])
        values = torch.stack([l.detach().float() for l in ls]).to(dev, torch.float64)
        dist.all_reduce(values)
        values = (values / world).float().cpu()
        sizes = [p.numel() for p in self.shared_params]
        flat = torch.zeros(self.n_tasks, sum(sizes), dtype=torch.float32, device=dev)
        for i, l in enumerate(ls):
            # a task is skipped by all ranks or by none (the decision uses the global value)
            if not l.requires_grad or float(values[i]) == 0.0:
                continue
            grads = torch.autograd.grad(l, self.shared_params, retain_graph=True,
                                        allow_unused=True)
            flat[i] = torch.cat([(g.detach().float() if g is not None
                                  else torch.zeros_like(p, dtype=torch.float32)).reshape(-1)
                                 for g, p in zip(grads, self.shared_params)]).to(dev)
        dist.all_reduce(flat)
        norms = (flat / world).pow(2).sum(dim=1).sqrt().cpu()
        return values, norms

    def _broadcast_weights(self) -> None:
        import torch.distributed as dist

        w = self.w.detach().clone().to(self._coll_device(self.shared_params[0]))
        dist.broadcast(w, src=0)
        with torch.no_grad():
            self.w.copy_(w.cpu())

    # -- persistence (resume) ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"task_names": self.task_names, "alpha": self.alpha, "w": self.w.detach().clone(),
                "initial_losses": self.initial_losses.clone(), "steps": self.steps,
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if list(state["task_names"]) != self.task_names:
            raise ValueError(f"GradNorm state is for tasks {state['task_names']}, "
                             f"not {self.task_names}")
        with torch.no_grad():
            self.w.copy_(state["w"])
        self.initial_losses = state["initial_losses"].detach().cpu().clone()  # GPU-loaded ck
        self.steps = int(state["steps"])
        self.optimizer.load_state_dict(state["optimizer"])
