"""Loss functions of MSU-Net's three tasks (float32 math whatever the autocast dtype).

- global decomposition: soft-label cross-entropy  -sum_i y_i log p_i, with p = softmax(z) and z
  the full-constraint (ReLU) logits; computed with log_softmax for stability.
- pure-image classification (PSG): cross-entropy on the same kind of constrained logits.
- local reconstruction (LSG): mean squared error + lambda * L1/2(A), L1/2(A) = sum sqrt(A + eps)
  over the 17 classes, averaged over cells.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Per-sample -sum_i y_i log softmax(z)_i (no reduction)."""
    return -(target.float() * torch.log_softmax(logits.float(), dim=dim)).sum(dim)


def pure_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels.long())


def l_half(abundances: torch.Tensor, eps: float = 1e-4, class_dim: int = 1) -> torch.Tensor:
    """L1/2 sparsity per cell: sum over classes of sqrt(A + eps) (no reduction over cells)."""
    return torch.sqrt(abundances.float() + eps).sum(dim=class_dim)


def unmixing_loss(recon: torch.Tensor, target: torch.Tensor, abundances: torch.Tensor,
                  sparsity: float = 1e-3, eps: float = 1e-4) -> torch.Tensor:
    """Per-patch LSG loss: MSE(recon, target) + sparsity * mean_cells L1/2(A).

    recon/target (N, 3, h, w), abundances (N, 17, g, g) -> (N,)
    """
    mse = (recon.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
    return mse + sparsity * l_half(abundances, eps, class_dim=1).mean(dim=(1, 2))


def kl_to_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft CE minus the target entropy: KL(y || p) >= 0, 0 at a perfect fit (diagnostics)."""
    y = target.float()
    ent = -(y * torch.log(y.clamp(min=1e-12))).sum(-1)
    return soft_cross_entropy(logits, y) - ent
