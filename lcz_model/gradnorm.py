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

With torch.compile, set ``torch._functorch.config.donated_buffer = False``: the per-task
gradients need ``retain_graph=True``, which compiled backward graphs with donated buffers refuse.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch


class GradNorm:
    def __init__(self, task_names: Sequence[str], shared_params: Iterable[torch.nn.Parameter],
                 alpha: float = 1.5, lr: float = 0.025, min_weight: float = 1e-3):
        self.task_names = list(task_names)
        if not self.task_names:
            raise ValueError("GradNorm needs at least one task")
        self.shared_params = [p for p in shared_params if p.requires_grad]
        if not self.shared_params:
            raise ValueError("GradNorm needs the trainable parameters of the last shared layer")
        self.alpha = float(alpha)
        self.min_weight = float(min_weight)
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
        self.initial_losses = state["initial_losses"].clone()
        self.steps = int(state["steps"])
        self.optimizer.load_state_dict(state["optimizer"])
