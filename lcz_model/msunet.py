"""MSU-Net: Mixed-Scene Unmixing Network for block-level LCZ abundances.

Reference: Li, Tian, Wang, Tu, Lu, Jiang, Huang, "High-resolution local climate zone mapping via
deep mixed-scene decomposition of remote sensing imagery", Int. J. Appl. Earth Obs. Geoinf.
The authors published no code; this file is our reading (see ``shared/design/method.md``). Every
choice the paper leaves open is marked ``# DECISION:`` below.

Task: a street block -> 17 abundances p (LCZ 1-10, A-G; order from ``lcz_model.classes``),
p_i >= 0, sum_i p_i = 1.

Architecture (one shared-weight Swin encoder E, features_only, 4 stages)::

    F_global = Proj(E(global)[4])                    (N = h*w tokens, 8x8 at 256 px; dim d)

    PSG  (purified-image semantic guidance, pure blocks x with label c):
         f = Pool(E(x)[4]); z = ReLU(W_c Proj(f) + b);  L_pure = CE(softmax(z), c)
         endmember bank  B_c <- m B_c + (1 - m) mean{f : label c}      (EMA, m = cfg.ema)
         F_pure = Proj(B)                            (17 class tokens)

    LSG  (local-patch semantic guidance, an unmixing autoencoder over a local patch):
         P = PoolPyramid(E(local)[1..4])             (every stage pooled to the last grid,
                                                      projected to d, concatenated, fused)
         A = softmax(ReLU(Conv1x1(P)))               (17 sparse abundances per cell)
         x_hat = sum_c A_c * M_c                     (linear mixing of 17 learnt endmember
                                                      textures, at 1/recon_scale resolution)
         L_local = ||x_hat - down(x)||^2 + lambda * mean_cells sum_c sqrt(A_c + eps)
         F_local = P (flattened)

    DCAF (dual cross-attention fusion):
         Q_l = (F_global + E(pos_g)) W_l^Q,  K_l = (F_local + E(pos_l)) W_l^K,  V_l = F_local W_l^V
              pos_g: each global token's cell on the global grid; pos_l: where each local token
              lies on that grid (the local patch's box in the global image, ``local_boxes``);
              E: 2-D sin/cos features -> learned linear (``local_positions``, DECISION)
         F'_global  = F_global + r * Conv(softmax(Q_l K_l^T / sqrt(d)) V_l)     (r init 0)
         S  = softmax(cos(F'_global, F_pure))                                 (over 17 classes)
         Q_p = F'_global W_p^Q,  K_p = F_pure W_p^K,  V_p = F_pure W_p^V
         w  = softmax(Q_p K_p^T / sqrt(d))
         F''_global = F'_global + (w * S) V_p                                 (element-wise)

    Head: p = softmax(ReLU(Linear(Pool(F''_global))))

    Pool = the mean over the tokens the block covers, each weighted by its share of in-block
    pixels (``token_pool="block"``, DECISION); ``token_pool="all"`` is plain GAP.

    L_global = -sum_i y_i log p_i   (soft-label cross-entropy against the annotated fractions)

Ablation switches (paper, Table 6), ``MSUNetConfig.variant``:
    baseline  encoder + head                               tasks: global
    psg       + PSG branch (auxiliary task, shared encoder) tasks: global, pure
    psg_lsg   + LSG; global and local features concatenated tasks: global, pure, local
    full      + DCAF                                        tasks: global, pure, local

Multiple local patches: ``local_img`` may be (B, K, 3, H, W); every local patch is paired with its
block's global image (one sample per pair), and the block's abundances are the mean of its pairs'
abundances over the valid patches (``local_mask``).
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from lcz_model.classes import N_CLASSES
from lcz_model.encoders import ENCODERS, SwinEncoder, build_encoder
from lcz_model.losses import masked_mean, pure_cross_entropy, soft_cross_entropy, unmixing_loss


VARIANTS = ("baseline", "psg", "psg_lsg", "full")
TOKEN_POOLS = ("block", "all")
VARIANT_TASKS: dict[str, tuple[str, ...]] = {
    "baseline": ("global",),
    "psg": ("global", "pure"),
    "psg_lsg": ("global", "pure", "local"),
    "full": ("global", "pure", "local"),
}


@dataclass
class MSUNetConfig:
    variant: str = "full"              # baseline | psg | psg_lsg | full
    encoder: str = "swin_tiny"         # key of lcz_model.encoders.ENCODERS
    img_size: int = 256                # global, local and pure images are all img_size square
    encoder_checkpoint: str | None = None  # local state_dict file; never downloaded
    fusion_dim: int = 256              # DECISION: d, the width of every token after Proj
    lsg_sparsity: float = 1e-3         # lambda of the L1/2 term
    sparsity_eps: float = 1e-4         # DECISION: eps in sqrt(A + eps) (caps the gradient at A=0)
    recon_scale: int = 4               # DECISION: LSG reconstructs the local patch at 1/4 size
    ema: float = 0.99                  # endmember bank momentum
    dropout: float = 0.1               # head dropout (also what MC-dropout samples)
    drop_path: float = 0.1             # encoder stochastic depth
    # DECISION: how token grids are pooled for the head and for PSG's pure features. "block":
    # mean over the tokens the block covers, weighted by the share of each token's pixels inside
    # the polygon (outside = 0 after normalising, so the mask is read off the image itself);
    # "all": plain GAP over every token, also the zero-padded outside (blocks of different
    # shapes then dilute their features by different amounts). Evidence: docs/model-decisions.md.
    token_pool: str = "block"
    # DECISION: r of DCAF step 1 at initialisation 0 (as method.md); 1 was no better and less
    # stable. Evidence: docs/model-decisions.md.
    local_gate_init: float = 0.0
    # DECISION: DCAF step 1 gives local tokens their position on the global token grid (the
    # local patch's box in the global image, from the package's images/local_boxes.csv or the
    # chips' origins), and global tokens theirs, added to the inputs of Q_l and K_l: the
    # fusion "attends to the global tokens a local patch lies under", which it cannot without
    # positions (local patches alone say nothing about where they are). Method-faithful = on;
    # False reproduces the earlier position-free fusion. Blocks without boxes get no position
    # terms. Evidence: docs/model-decisions.md (pending a GPU run).
    local_positions: bool = True
    position_freqs: int = 6            # sin/cos frequencies per axis of the position features
    n_classes: int = N_CLASSES

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {VARIANTS}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose one of "
                             f"{sorted(ENCODERS)}")
        if self.img_size % 32:
            raise ValueError(f"img_size must be a multiple of 32, got {self.img_size}")
        if self.token_pool not in TOKEN_POOLS:
            raise ValueError(f"unknown token_pool {self.token_pool!r}; choose one of "
                             f"{TOKEN_POOLS}")
        grid = self.img_size // 32
        if (self.img_size // self.recon_scale) % grid:
            raise ValueError(f"img_size/recon_scale ({self.img_size}/{self.recon_scale}) must be "
                             f"a multiple of the last-stage grid ({grid})")

    @property
    def tasks(self) -> tuple[str, ...]:
        return VARIANT_TASKS[self.variant]

    @property
    def has_psg(self) -> bool:
        return "pure" in self.tasks

    @property
    def has_lsg(self) -> bool:
        return "local" in self.tasks

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MSUNetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        # checkpoints written before token_pool existed were trained with plain GAP, before
        # local_positions without positions
        d = {"token_pool": "all", "local_positions": False, **d}
        unknown = sorted(set(d) - names)
        if unknown:
            warnings.warn(f"MSUNetConfig: ignoring unknown keys {unknown}", stacklevel=2)
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------------------------
# Small modules
# --------------------------------------------------------------------------------------------

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW map (works for channels_last memory too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TokenProjection(nn.Module):
    """Proj: encoder channels -> d, shared by global tokens and pure/endmember vectors.

    DECISION: one projection for F_global and F_pure so the cosine similarity S compares
    vectors of the same space.
    """

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.fc = nn.Linear(in_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


class FullConstraintHead(nn.Module):
    """The "full constraint module": Linear -> ReLU, read through softmax.

    ReLU enforces non-negative evidence, softmax the sum-to-one constraint (ANC + ASC of linear
    unmixing). ``forward`` returns the constrained logits z = ReLU(Wx + b) (>= 0); the
    probabilities / abundances are softmax(z) (use log_softmax(z) for losses).
    DECISION: the bias starts at +1 so that every class begins on the linear side of the ReLU
    (a class whose logit is stuck at 0 for all inputs would get no gradient).
    """

    def __init__(self, in_dim: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, n_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.constant_(self.fc.bias, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.drop(x)))


class EndmemberBank(nn.Module):
    """17 class prototypes of pure-block encoder features, kept as an exponential moving average.

    DECISION: the bank stores pooled *encoder* features (before Proj), detached; F_pure =
    Proj(bank) is recomputed each step so Proj, W_p^K and W_p^V are trained through it. A class
    seen for the first time is set to its batch mean; classes never seen are masked out of
    the DCAF attention (``valid``).
    """

    def __init__(self, n_classes: int, dim: int, momentum: float = 0.99):
        super().__init__()
        self.momentum = float(momentum)
        self.register_buffer("prototypes", torch.zeros(n_classes, dim))
        self.register_buffer("valid", torch.zeros(n_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if features.shape[0] == 0:
            return
        n = self.prototypes.shape[0]
        feats = features.detach().float()
        labels = labels.long().to(feats.device)
        sums = torch.zeros_like(self.prototypes).index_add_(0, labels, feats)
        counts = torch.bincount(labels, minlength=n).to(feats.dtype)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # DDP: each rank holds a shard of the batch; summing the shards' class sums and
            # counts gives every rank the bank one process would have on the whole batch
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        present = counts > 0
        mean = sums / counts.clamp(min=1).unsqueeze(1)
        m = self.momentum
        ema = torch.where(self.valid.unsqueeze(1), m * self.prototypes + (1 - m) * mean, mean)
        # no host sync: where() instead of indexing by a data-dependent mask
        self.prototypes.copy_(torch.where(present.unsqueeze(1), ema, self.prototypes))
        self.valid.logical_or_(present)


class PoolingPyramid(nn.Module):
    """Pooling feature pyramid: every stage avg-pooled to the last stage's grid -> 1x1 conv to d
    (+ LayerNorm, GELU) -> concatenated -> 1x1 conv to d.  One d-vector per grid cell.

    DECISION: pooling onto the coarsest grid (8x8 cells of 32 px at 256 px) keeps fine-stage
    statistics per cell while the token count stays that of F_global; pooling *before* the
    lateral convs costs 1/64 of the FLOPs of pooling after them at stage 1.
    """

    def __init__(self, in_channels: Sequence[int], dim: int, grid: int):
        super().__init__()
        self.grid = grid
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1), LayerNorm2d(dim), nn.GELU()) for c in in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(dim * len(in_channels), dim, 1), LayerNorm2d(dim),
                                  nn.GELU())

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = [lat(F.adaptive_avg_pool2d(f, self.grid)) for lat, f in zip(self.lateral, feats)]
        return self.fuse(torch.cat(pooled, dim=1))


class LocalUnmixing(nn.Module):
    """LSG branch: pyramid -> per-cell full-constraint abundances -> linear-mixing decoder.

    DECISION: the decoder is the linear mixing model: each class owns a learnt RGB "endmember
    texture" of (cell x cell) pixels and a cell is reconstructed as the abundance-weighted sum
    of the 17 textures (a stride=kernel ConvTranspose2d without bias). The target is the local
    patch average-pooled by ``recon_scale`` (64x64 for a 256 px patch, 8x8 px per cell).
    """

    def __init__(self, in_channels: Sequence[int], dim: int, grid: int, n_classes: int,
                 cell: int):
        super().__init__()
        self.pyramid = PoolingPyramid(in_channels, dim, grid)
        self.abundance = nn.Conv2d(dim, n_classes, 1)
        nn.init.trunc_normal_(self.abundance.weight, std=0.02)
        nn.init.constant_(self.abundance.bias, 1.0)  # DECISION: as FullConstraintHead
        self.decoder = nn.ConvTranspose2d(n_classes, 3, kernel_size=cell, stride=cell, bias=False)
        nn.init.normal_(self.decoder.weight, std=0.5)

    def forward(self, feats: Sequence[torch.Tensor]):
        p = self.pyramid(feats)                                      # (N, d, g, g)
        a = torch.softmax(F.relu(self.abundance(p)).float(), dim=1)  # (N, 17, g, g), sums to 1
        recon = self.decoder(a.to(p.dtype))                          # (N, 3, g*cell, g*cell)
        tokens = p.flatten(2).transpose(1, 2)                        # (N, g*g, d)
        return tokens, a, recon


class GridPositions(nn.Module):
    """Positions on the global token grid -> d: 2-D sin/cos features (``n_freq`` octaves per
    axis, from twice the grid down to 1/2**(n_freq-1) of it, so sub-cell offsets of local tokens
    differ) through a learned linear map, shared by global and local tokens (the same place gives
    the same embedding)."""

    def __init__(self, dim: int, grid: int, n_freq: int = 6):
        super().__init__()
        self.grid = int(grid)
        self.register_buffer("freqs", torch.pi / self.grid * 2.0 ** torch.arange(n_freq),
                             persistent=False)
        self.proj = nn.Linear(4 * n_freq, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # DECISION: torch's default Linear init (not the 0.02 of the token layers), zero bias:
        # embeddings of a size comparable to the tokens', so positions count from the start
        self.proj.reset_parameters()
        nn.init.zeros_(self.proj.bias)

    def forward(self, yx: torch.Tensor) -> torch.Tensor:
        """yx (..., 2) in token units of the global grid (cell i spans [i, i+1)) -> (..., d)."""
        ang = yx.float().unsqueeze(-1) * self.freqs                   # (..., 2, F)
        return self.proj(torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2))

    def global_cells(self, hw: tuple[int, int], device) -> torch.Tensor:
        """(h*w, 2) centres of the global tokens, row-major as the tokens are flattened."""
        ys = torch.arange(hw[0], device=device, dtype=torch.float32) + 0.5
        xs = torch.arange(hw[1], device=device, dtype=torch.float32) + 0.5
        return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)

    def local_cells(self, boxes: torch.Tensor, hw: tuple[int, int], g: int) -> torch.Tensor:
        """boxes (N, 4) = (y0, x0, y1, x1) of each local patch in the global image (fractions of
        its side) -> (N, g*g, 2): where each of the patch's g x g tokens lies on the global grid."""
        u = (torch.arange(g, device=boxes.device, dtype=torch.float32) + 0.5) / g
        b = boxes.float()
        ys = b[:, 0:1] + u * (b[:, 2:3] - b[:, 0:1])                 # (N, g) in [0, 1]
        xs = b[:, 1:2] + u * (b[:, 3:4] - b[:, 1:2])
        yy = ys[:, :, None].expand(-1, g, g) * hw[0]
        xx = xs[:, None, :].expand(-1, g, g) * hw[1]
        return torch.stack([yy, xx], dim=-1).reshape(b.shape[0], g * g, 2)


class LocalCrossAttention(nn.Module):
    """DCAF step 1: F' = F_global + r * Conv(softmax(Q_l K_l^T / sqrt(d)) V_l), r init 0; with
    ``positions``, Q_l and K_l read the tokens plus their places on the global grid."""

    def __init__(self, dim: int, gate_init: float = 0.0, positions: GridPositions | None = None):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        # DECISION: "Conv" is a 3x3 convolution over the global token grid (a linear output
        # projection with spatial context).
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.gate = nn.Parameter(torch.full((1,), float(gate_init)))  # r
        self.pos = positions

    def forward(self, f_global: torch.Tensor, f_local: torch.Tensor, hw: tuple[int, int],
                local_boxes: torch.Tensor | None = None):
        n, t, d = f_global.shape
        qg, kl = f_global, f_local
        if self.pos is not None:
            if local_boxes is None:     # unknown: NaN rows (the embedding stays in the graph
                local_boxes = f_global.new_full((n, 4), float("nan"))  # at weight 0: DDP)
            # rows without a box (NaN) get no position terms on either side
            has = torch.isfinite(local_boxes).all(dim=-1)                  # (n,)
            boxes = torch.where(has[:, None], local_boxes, torch.zeros_like(local_boxes))
            g = int(round(f_local.shape[1] ** 0.5))
            w = has.to(f_global.dtype)[:, None, None]
            pe_g = self.pos(self.pos.global_cells(hw, f_global.device)).to(f_global.dtype)
            pe_l = self.pos(self.pos.local_cells(boxes, hw, g)).to(f_local.dtype)
            qg, kl = f_global + w * pe_g, f_local + w * pe_l
        q = self.q(qg).unsqueeze(1)
        k = self.k(kl).unsqueeze(1)
        v = self.v(f_local).unsqueeze(1)
        # single head, scale 1/sqrt(d), exactly softmax(QK^T/sqrt(d))V
        att = F.scaled_dot_product_attention(q, k, v).squeeze(1)      # (n, t, d)
        att = att.transpose(1, 2).reshape(n, d, hw[0], hw[1])
        att = self.conv(att).flatten(2).transpose(1, 2)
        return f_global + self.gate.to(att.dtype) * att


class PureCrossAttention(nn.Module):
    """DCAF step 2: F'' = F' + (w * S) V_p with w = softmax(Q_p K_p^T / sqrt(d)) and
    S = softmax(cos(F', F_pure)), both over the 17 endmember tokens."""

    def __init__(self, dim: int):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.scale = dim ** -0.5

    def forward(self, f: torch.Tensor, f_pure: torch.Tensor, valid: torch.Tensor):
        # f: (n, t, d); f_pure: (17, d); valid: (17,) bool (classes the bank has seen)
        neg = torch.finfo(torch.float16).min  # safe for fp16/bf16/fp32
        invalid = ~valid
        cos = F.normalize(f.float(), dim=-1) @ F.normalize(f_pure.float(), dim=-1).t()
        s = torch.softmax(cos.masked_fill(invalid, neg), dim=-1)            # (n, t, 17)
        q = self.q(f)
        k = self.k(f_pure)
        v = self.v(f_pure)
        logits = (q @ k.t()).float() * self.scale
        w = torch.softmax(logits.masked_fill(invalid, neg), dim=-1)        # (n, t, 17)
        # DECISION: S refines w element-wise, as Eq. 6 intends (no renormalisation, no
        # temperature); with an empty bank the step is a no-op.
        ws = (w * s * valid.any().to(w.dtype)).to(v.dtype)
        return f + ws @ v


class DCAF(nn.Module):
    def __init__(self, dim: int, local_gate_init: float = 0.0, grid: int | None = None,
                 local_positions: bool = False, position_freqs: int = 6):
        super().__init__()
        pos = GridPositions(dim, grid, position_freqs) if local_positions and grid else None
        self.local_attn = LocalCrossAttention(dim, local_gate_init, pos)
        self.pure_attn = PureCrossAttention(dim)

    def forward(self, f_global, f_local, f_pure, valid, hw, local_boxes=None):
        f = f_global if f_local is None else self.local_attn(f_global, f_local, hw, local_boxes)
        return self.pure_attn(f, f_pure, valid)


class ConcatFusion(nn.Module):
    """psg_lsg ablation: pooled global and pooled local features concatenated -> d.

    DECISION: pooled (not token-wise) concatenation followed by Linear+GELU back to d; PSG acts
    only through the shared encoder (multi-task), as in the "+PSG" variant.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, g: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([g, l], dim=-1))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def token_coverage(images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, h*w) share of each token cell's pixels inside the block. Pixels outside the polygon
    are exactly 0 in every channel after normalising (``lcz_model.data.normalise``); an
    in-block pixel never is (the ImageNet means are not whole 8-bit values)."""
    inside = (images.detach() != 0).any(dim=1, keepdim=True).float()       # (B, 1, H, W)
    return F.adaptive_avg_pool2d(inside, grid).flatten(1)


def pool_tokens(tokens: torch.Tensor, coverage: torch.Tensor | None) -> torch.Tensor:
    """(B, N, d) -> (B, d): coverage-weighted mean over tokens (plain mean where coverage is
    None or a row covers nothing)."""
    if coverage is None:
        return tokens.mean(dim=1)
    w = coverage.to(tokens.dtype)
    empty = (w.sum(dim=1, keepdim=True) <= 0).to(w.dtype)
    w = w + empty                                   # nothing covered: uniform weights
    return (tokens * w.unsqueeze(-1)).sum(dim=1) / w.sum(dim=1, keepdim=True)


def _pad_locals(local_imgs, device=None):
    """list of (K_i, 3, H, W) -> (B, Kmax, 3, H, W) zero-padded + (B, Kmax) bool mask."""
    ks = [int(t.shape[0]) for t in local_imgs]
    if min(ks) < 1:
        raise ValueError("every block needs at least one local patch")
    kmax = max(ks)
    ref = local_imgs[0]
    out = ref.new_zeros((len(local_imgs), kmax) + tuple(ref.shape[1:]))
    mask = torch.zeros(len(local_imgs), kmax, dtype=torch.bool, device=ref.device)
    for i, t in enumerate(local_imgs):
        out[i, :t.shape[0]] = t
        mask[i, :t.shape[0]] = True
    if device is not None:
        out, mask = out.to(device), mask.to(device)
    return out, mask


class MSUNet(nn.Module):
    def __init__(self, cfg: MSUNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MSUNetConfig()
        d, n = cfg.fusion_dim, cfg.n_classes
        self.encoder: SwinEncoder = build_encoder(cfg.encoder, img_size=cfg.img_size,
                                                  checkpoint=cfg.encoder_checkpoint,
                                                  drop_path_rate=cfg.drop_path)
        chans = self.encoder.channels
        self.grid = cfg.img_size // self.encoder.reductions[-1]
        self.token_proj = TokenProjection(chans[-1], d)
        self.psg_head = self.bank = None
        self.lsg = self.dcaf = self.concat_fuse = None
        if cfg.has_psg:
            self.psg_head = FullConstraintHead(d, n)
            self.bank = EndmemberBank(n, chans[-1], momentum=cfg.ema)
        if cfg.has_lsg:
            cell = cfg.img_size // cfg.recon_scale // self.grid
            self.lsg = LocalUnmixing(chans, d, self.grid, n, cell)
        if cfg.variant == "full":
            self.dcaf = DCAF(d, cfg.local_gate_init, self.grid, cfg.local_positions,
                             cfg.position_freqs)
        elif cfg.variant == "psg_lsg":
            self.concat_fuse = ConcatFusion(d)
        self.head_norm = nn.LayerNorm(d)
        self.head = FullConstraintHead(d, n, dropout=cfg.dropout)
        self._mc_dropout = False
        for part in (self.token_proj, self.dcaf, self.concat_fuse):
            if part is not None:
                part.apply(_init_linear)
        if self.dcaf is not None and self.dcaf.local_attn.pos is not None:
            self.dcaf.local_attn.pos.reset_parameters()

    # -- helpers -------------------------------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        return self.cfg.tasks

    def shared_layer(self) -> nn.Module:
        """The last shared encoder layer (Swin stage 4), where GradNorm compares task gradients."""
        return self.encoder.last_stage()

    def update_endmembers(self, pure_features: torch.Tensor, pure_labels: torch.Tensor) -> None:
        """EMA update of the endmember bank with pooled encoder features of pure images."""
        if self.bank is not None:
            self.bank.update(pure_features, pure_labels)

    def _zero_loss(self) -> torch.Tensor:
        # a zero that is still connected to the graph (a task with nothing in this batch)
        return self.head.fc.bias.sum() * 0.0

    # -- forward -------------------------------------------------------------------------------
    def forward(self, global_img: torch.Tensor, local_img: torch.Tensor | None = None,
                pure_img: torch.Tensor | None = None, pure_labels: torch.Tensor | None = None,
                local_mask: torch.Tensor | None = None,
                local_boxes: torch.Tensor | None = None) -> dict[str, Any]:
        """``local_boxes``: (B, 4) or (B, K, 4) as ``local_img``, each local patch's (y0, x0,
        y1, x1) in the global image as fractions of its side (NaN: unknown); read by DCAF when
        ``cfg.local_positions``."""
        cfg = self.cfg
        b = global_img.shape[0]
        local_4d = local_img is not None and local_img.dim() == 4
        use_local = cfg.has_lsg and local_img is not None
        if use_local:
            if local_4d:
                local_img = local_img.unsqueeze(1)
            k = local_img.shape[1]
            if local_mask is None:
                local_mask = torch.ones(b, k, dtype=torch.bool, device=global_img.device)
            local_mask = local_mask.to(global_img.device, torch.bool)
        else:
            k = 1
            local_mask = torch.ones(b, 1, dtype=torch.bool, device=global_img.device)
        use_pure = cfg.has_psg and pure_img is not None and pure_img.shape[0] > 0

        # One encoder pass over all three image streams (no BatchNorm anywhere, so this is
        # exactly three separate passes, only faster).
        chunks = [global_img]
        if use_local:
            chunks.append(local_img.flatten(0, 1))
        if use_pure:
            chunks.append(pure_img)
        sizes = [c.shape[0] for c in chunks]
        x = torch.cat(chunks) if len(chunks) > 1 else global_img
        feats = [f.split(sizes) for f in self.encoder(x)]
        f_g = feats[-1][0]
        hw = (f_g.shape[2], f_g.shape[3])
        tokens_g = self.token_proj(f_g.flatten(2).transpose(1, 2))    # (B, N, d)

        out: dict[str, Any] = {"logits_pure": None, "pure_features": None, "recon": None,
                               "local_abundances": None}
        # PSG: classify pure images, refresh the endmember bank
        block_pool = cfg.token_pool == "block"
        if use_pure:
            f_last = feats[-1][-1]
            cov_p = token_coverage(pure_img, f_last.shape[2:]) if block_pool else None
            f_p = pool_tokens(f_last.flatten(2).transpose(1, 2), cov_p)  # (P, C)
            if self.training and pure_labels is not None:
                self.update_endmembers(f_p, pure_labels)
            out["pure_features"] = f_p
            out["logits_pure"] = self.psg_head(self.token_proj(f_p))

        # LSG: unmix every local patch
        tokens_l = None
        if use_local:
            tokens_l, a_loc, recon = self.lsg([f[1] for f in feats])
            shape = (b, k) if not local_4d else (b,)
            out["local_abundances"] = a_loc.reshape(shape + a_loc.shape[1:])
            out["recon"] = recon.reshape(shape + recon.shape[1:])

        # Fusion (pairs: every local patch with its block's global tokens)
        cov_g = token_coverage(global_img, hw) if block_pool else None
        if use_local and k > 1:
            tokens_g = tokens_g.repeat_interleave(k, dim=0)               # (B*K, N, d)
            cov_g = cov_g.repeat_interleave(k, dim=0) if cov_g is not None else None
        if cfg.variant == "full":
            f_pure = self.token_proj(self.bank.prototypes)               # (17, d)
            boxes = None
            if use_local and local_boxes is not None and cfg.local_positions:
                boxes = local_boxes.to(tokens_g.device).reshape(-1, 4)   # (B*K, 4), b-major
            fused = self.dcaf(tokens_g, tokens_l, f_pure, self.bank.valid, hw, boxes)
            pooled = pool_tokens(self.head_norm(fused), cov_g)
        elif cfg.variant == "psg_lsg":
            g = pool_tokens(self.head_norm(tokens_g), cov_g)
            # DECISION: without local patches the local half of the concatenation is zero
            l = tokens_l.mean(dim=1) if tokens_l is not None else torch.zeros_like(g)
            pooled = self.concat_fuse(g, l)
        else:
            pooled = pool_tokens(self.head_norm(tokens_g), cov_g)
        out["pooled"] = pooled
        return self._head(pooled, b, k, local_mask, out)

    def _head(self, pooled, b, k, local_mask, out):
        z = self.head(pooled).float().reshape(b, k, -1)                  # constrained logits >= 0
        pair = torch.softmax(z, dim=-1)
        w = local_mask.to(pair.dtype).unsqueeze(-1)
        # DECISION: a block's abundances = mean of its (global, local_k) pairs' abundances
        out["abundances"] = (pair * w).sum(1) / w.sum(1).clamp(min=1.0)
        out["pair_logits"] = z
        out["pair_abundances"] = pair
        out["local_mask"] = local_mask
        return out

    # -- training ------------------------------------------------------------------------------
    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-task losses of this variant: {"global", ["pure"], ["local"]} (float32 scalars).

        batch: global (B,3,H,W), local (B,3,H,W) or (B,K,3,H,W) [+ local_mask (B,K)],
        fractions (B,17), pure (P,3,H,W), pure_labels (P,) long; P may be 0.
        """
        cfg = self.cfg
        out = self(batch["global"], batch.get("local"), batch.get("pure"),
                   batch.get("pure_labels"), batch.get("local_mask"), batch.get("local_boxes"))
        y = batch["fractions"].to(out["pair_logits"].device).float()
        ce = soft_cross_entropy(out["pair_logits"], y.unsqueeze(1))      # (B, K)
        losses = {"global": masked_mean(ce, out["local_mask"])}
        if cfg.has_psg:
            if out["logits_pure"] is not None:
                labels = batch["pure_labels"].to(out["logits_pure"].device)
                losses["pure"] = pure_cross_entropy(out["logits_pure"], labels)
            else:
                losses["pure"] = self._zero_loss()
        if cfg.has_lsg:
            if out["recon"] is not None:
                losses["local"] = self._local_loss(out, batch["local"])
            else:
                losses["local"] = self._zero_loss()
        return {t: losses[t] for t in cfg.tasks}

    def recon_target(self, local_img: torch.Tensor) -> torch.Tensor:
        """What LSG reconstructs: the local patch average-pooled by ``recon_scale``."""
        x = local_img.float()
        y = F.avg_pool2d(x.flatten(0, x.dim() - 4), self.cfg.recon_scale)
        return y.reshape(x.shape[:-3] + y.shape[1:])

    def _local_loss(self, out, local_img: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        recon, a = out["recon"], out["local_abundances"]
        target = self.recon_target(local_img.to(recon.device))
        per = unmixing_loss(recon.flatten(0, recon.dim() - 4), target.flatten(0, target.dim() - 4),
                            a.flatten(0, a.dim() - 4), cfg.lsg_sparsity, cfg.sparsity_eps)
        return masked_mean(per, out["local_mask"].flatten())

    # -- inference -----------------------------------------------------------------------------
    def enable_mc_dropout(self, enabled: bool = True) -> None:
        """Keep dropout active in eval/predict (Monte-Carlo dropout, e.g. for BALD)."""
        self._mc_dropout = bool(enabled)
        self._set_dropout_mode()

    def _set_dropout_mode(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Dropout) and m.p > 0:
                m.train(self.training or self._mc_dropout)

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "_mc_dropout", False):
            self._set_dropout_mode()
        return self

    def _prepare_locals(self, global_img, local_imgs, local_mask):
        if local_imgs is None:
            return None, None
        if isinstance(local_imgs, (list, tuple)):
            local_imgs, local_mask = _pad_locals(local_imgs, device=global_img.device)
        return local_imgs, local_mask

    @torch.inference_mode()
    def predict(self, global_img: torch.Tensor, local_imgs=None,
                local_mask: torch.Tensor | None = None,
                local_boxes: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 17) abundances, eval mode, no grad. ``local_imgs``: (B, K, 3, H, W) with
        ``local_mask`` (B, K) for padded slots, or a list of B tensors (K_i, 3, H, W)."""
        was = self.training
        self.eval()
        try:
            local_imgs, local_mask = self._prepare_locals(global_img, local_imgs, local_mask)
            return self(global_img, local_imgs, local_mask=local_mask,
                        local_boxes=local_boxes)["abundances"].float()
        finally:
            self.train(was)

    @torch.inference_mode()
    def predict_mc(self, global_img: torch.Tensor, local_imgs=None,
                   local_mask: torch.Tensor | None = None, n_samples: int = 10,
                   local_boxes: torch.Tensor | None = None) -> torch.Tensor:
        """(n_samples, B, 17) MC-dropout samples; the encoder and fusion run once (dropout lives
        only in the head). ``local_boxes`` as in :meth:`forward`."""
        was, mc = self.training, self._mc_dropout
        self.eval()
        try:
            local_imgs, local_mask = self._prepare_locals(global_img, local_imgs, local_mask)
            out = self(global_img, local_imgs, local_mask=local_mask, local_boxes=local_boxes)
            b, k = out["pair_logits"].shape[:2]
            self.enable_mc_dropout(True)
            samples = [self._head(out["pooled"], b, k, out["local_mask"], {})["abundances"]
                       for _ in range(n_samples)]
            return torch.stack(samples).float()
        finally:
            self.enable_mc_dropout(mc)
            self.train(was)


def build_model(variant: str = "full", encoder: str = "swin_tiny", img_size: int = 256,
                **kw) -> MSUNet:
    """Build an MSU-Net (random init unless ``encoder_checkpoint`` names a local file)."""
    return MSUNet(MSUNetConfig(variant=variant, encoder=encoder, img_size=img_size, **kw))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
