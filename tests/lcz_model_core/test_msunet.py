import pytest
import torch

from lcz_model.classes import N_CLASSES
from lcz_model.gradnorm import GradNorm
from lcz_model.losses import kl_to_target
from lcz_model.msunet import VARIANT_TASKS, MSUNetConfig, build_model, pool_tokens, token_coverage

from .conftest import SIZE, make_batch, tiny_model

VARIANTS = ["baseline", "psg", "psg_lsg", "full"]


def _assert_simplex(p, atol=1e-5):
    assert (p >= 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(p.shape[:-1]), atol=atol)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_shapes_simplex_and_tasks(variant):
    m = tiny_model(variant)
    b = make_batch(b=3, p=2)
    out = m(b["global"], b["local"], b["pure"], b["pure_labels"])
    assert out["abundances"].shape == (3, N_CLASSES)
    _assert_simplex(out["abundances"])
    has_psg, has_lsg = variant != "baseline", variant in ("psg_lsg", "full")
    assert (out["logits_pure"] is not None) == has_psg
    if has_psg:
        assert out["logits_pure"].shape == (2, N_CLASSES)
        assert (out["logits_pure"] >= 0).all()          # full constraint: ReLU'd logits
    assert (out["recon"] is not None) == has_lsg
    if has_lsg:
        assert out["recon"].shape == (3, 3, SIZE // 4, SIZE // 4)   # recon_scale 4
        assert m.recon_target(b["local"]).shape == out["recon"].shape
        a = out["local_abundances"]
        assert a.shape == (3, N_CLASSES, 2, 2)                      # 2x2 grid at 64 px
        _assert_simplex(a.movedim(1, -1))
    losses = m.losses(b)
    assert tuple(losses) == VARIANT_TASKS[variant] == m.tasks
    assert all(v.dim() == 0 and torch.isfinite(v) and v.requires_grad for v in losses.values())


def test_no_pure_images_gives_zero_but_connected_pure_loss():
    m = tiny_model("full")
    b = make_batch(b=2, p=0)
    losses = m.losses(b)
    assert float(losses["pure"].detach()) == 0.0 and losses["pure"].requires_grad
    assert not bool(m.bank.valid.any())
    out = m(b["global"], b["local"])                     # empty bank: DCAF step 2 is a no-op
    _assert_simplex(out["abundances"])


def test_multi_local_mask_and_list_input():
    m = tiny_model("full").eval()
    b = make_batch(b=2, p=N_CLASSES)
    m.update_endmembers(torch.randn(N_CLASSES, m.encoder.out_channels), torch.arange(N_CLASSES))
    locs = torch.randn(2, 3, 3, SIZE, SIZE)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    p = m.predict(b["global"], locs, mask)
    _assert_simplex(p)
    garbage = locs.clone()
    garbage[0, 2] = 100.0
    garbage[1, 1:] = -50.0
    assert torch.allclose(p, m.predict(b["global"], garbage, mask), atol=1e-5)
    p_list = m.predict(b["global"], [locs[0, :2], locs[1, :1]])
    assert torch.allclose(p, p_list, atol=1e-5)
    # a block's output is the mean of its pairs' outputs
    p0 = m.predict(b["global"][:1], locs[:1, :1])
    p1 = m.predict(b["global"][:1], locs[:1, 1:2])
    assert torch.allclose(p[0], (p0[0] + p1[0]) / 2, atol=1e-5)


def test_predict_is_eval_no_grad_and_restores_mode():
    m = tiny_model("full").train()
    b = make_batch(b=2)
    p1 = m.predict(b["global"], b["local"][:, None])
    p2 = m.predict(b["global"], b["local"][:, None])
    assert torch.equal(p1, p2) and not p1.requires_grad
    assert m.training


def test_mc_dropout_samples_vary():
    m = tiny_model("full", dropout=0.5)
    b = make_batch(b=2)
    s = m.predict_mc(b["global"], b["local"][:, None], n_samples=4)
    assert s.shape == (4, 2, N_CLASSES)
    _assert_simplex(s)
    assert not torch.allclose(s[0], s[1])
    m.enable_mc_dropout(True)
    assert not torch.equal(m.predict(b["global"], b["local"][:, None]),
                           m.predict(b["global"], b["local"][:, None]))
    m.enable_mc_dropout(False)
    assert torch.equal(m.predict(b["global"], b["local"][:, None]),
                       m.predict(b["global"], b["local"][:, None]))


def _grad_norm(module):
    gs = [p.grad.abs().sum() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(gs).sum()) if gs else 0.0


def test_gate_starts_at_zero_and_receives_gradient():
    m = tiny_model("full", drop_path=0.0)
    assert float(m.dcaf.local_attn.gate.detach()) == 0.0
    sum(m.losses(make_batch(b=2, p=3)).values()).backward()
    assert float(m.dcaf.local_attn.gate.grad.abs()) > 0


def test_local_gate_init_is_configurable():
    m = tiny_model("full", local_gate_init=0.25)
    assert float(m.dcaf.local_attn.gate.detach()) == 0.25
    assert MSUNetConfig.from_dict(m.cfg.to_dict()).local_gate_init == 0.25


def test_token_coverage_reads_the_block_off_the_image():
    x = torch.randn(2, 3, 8, 8)
    x[0, :, :, :4] = 0                      # block 0: right half only
    x[0, :, :2, 4:] = 0                     # ... minus its top two rows
    cov = token_coverage(x, (2, 2))         # four 4x4 cells
    assert torch.allclose(cov[0], torch.tensor([0.0, 0.5, 0.0, 1.0]))
    assert torch.allclose(cov[1], torch.ones(4))


def test_pool_tokens_ignores_tokens_outside_the_block():
    tokens = torch.randn(2, 4, 5)
    cov = torch.tensor([[0.0, 0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    pooled = pool_tokens(tokens, cov)
    assert torch.allclose(pooled[0], (0.5 * tokens[0, 1] + tokens[0, 3]) / 1.5, atol=1e-6)
    assert torch.allclose(pooled[1], tokens[1].mean(0), atol=1e-6)   # nothing covered: plain mean
    changed = tokens.clone()
    changed[0, [0, 2]] += 100.0             # tokens the block does not cover
    assert torch.allclose(pool_tokens(changed, cov)[0], pooled[0], atol=1e-5)
    assert torch.allclose(pool_tokens(tokens, None), tokens.mean(1))


@pytest.mark.parametrize("variant", ["baseline", "full"])
def test_block_pooling_is_the_default_and_changes_the_output(variant):
    b = make_batch(b=2, p=2)
    b["global"][:, :, :, : SIZE // 2] = 0   # blocks cover the right half of their images
    block = tiny_model(variant, drop_path=0.0)
    assert block.cfg.token_pool == "block"
    plain = build_model(**{**block.cfg.to_dict(), "token_pool": "all"})
    plain.load_state_dict(block.state_dict())
    args = (b["global"], b["local"], b["pure"], b["pure_labels"])
    block.eval(), plain.eval()
    pb, pp = block(*args)["pooled"], plain(*args)["pooled"]
    assert not torch.allclose(pb, pp, atol=1e-4)
    with pytest.raises(ValueError, match="token_pool"):
        MSUNetConfig(token_pool="max")
    # checkpoints written before the option existed were trained with plain GAP
    legacy = {k: v for k, v in block.cfg.to_dict().items() if k != "token_pool"}
    assert MSUNetConfig.from_dict(legacy).token_pool == "all"


def test_gradients_reach_every_branch():
    m = tiny_model("full", drop_path=0.0)
    with torch.no_grad():
        m.dcaf.local_attn.gate.fill_(0.5)   # at r = 0 step 1's own weights get no gradient yet
    b = make_batch(b=3, p=4)
    sum(m.losses(b).values()).backward()
    branches = {
        "encoder.patch_embed": m.encoder.body.patch_embed,
        "encoder.stage1": m.encoder.body.layers_0,
        "encoder.stage4": m.shared_layer(),
        "token_proj": m.token_proj,
        "psg_head": m.psg_head,
        "lsg.pyramid": m.lsg.pyramid,
        "lsg.abundance": m.lsg.abundance,
        "lsg.decoder": m.lsg.decoder,
        "dcaf.local_attn.q": m.dcaf.local_attn.q,
        "dcaf.local_attn.k": m.dcaf.local_attn.k,
        "dcaf.local_attn.v": m.dcaf.local_attn.v,
        "dcaf.local_attn.conv": m.dcaf.local_attn.conv,
        "dcaf.pure_attn.q": m.dcaf.pure_attn.q,
        "dcaf.pure_attn.k": m.dcaf.pure_attn.k,
        "dcaf.pure_attn.v": m.dcaf.pure_attn.v,
        "head": m.head,
    }
    dead = [name for name, mod in branches.items() if _grad_norm(mod) == 0.0]
    assert not dead, f"no gradient reaches {dead}"
    assert float(m.dcaf.local_attn.gate.grad.abs()) > 0
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    # the global (decomposition) loss alone reaches the LSG pyramid and the bank projection
    m.zero_grad()
    m.losses(b)["global"].backward()
    assert _grad_norm(m.lsg.pyramid) > 0 and _grad_norm(m.dcaf.pure_attn.k) > 0


def test_endmember_bank_ema():
    m = tiny_model("full", ema=0.9)
    c = m.encoder.out_channels
    f1 = torch.randn(3, c)
    m.update_endmembers(f1, torch.tensor([2, 2, 5]))
    assert m.bank.valid.tolist() == [i in (2, 5) for i in range(N_CLASSES)]
    assert torch.allclose(m.bank.prototypes[2], f1[:2].mean(0))
    assert torch.allclose(m.bank.prototypes[5], f1[2])
    f2 = torch.randn(1, c)
    m.update_endmembers(f2, torch.tensor([5]))
    assert torch.allclose(m.bank.prototypes[5], 0.9 * f1[2] + 0.1 * f2[0], atol=1e-6)
    assert torch.count_nonzero(m.bank.prototypes[0]) == 0
    # training forward with pure labels updates the bank; the bank is saved in the state_dict
    m.train()
    b = make_batch(b=1, p=2)
    m.losses(b)
    assert m.bank.valid[b["pure_labels"]].all()
    assert "bank.prototypes" in m.state_dict() and "bank.valid" in m.state_dict()


def test_config_roundtrip_and_validation():
    cfg = MSUNetConfig(variant="psg", encoder="swin_micro", img_size=128, lsg_sparsity=2e-3)
    assert MSUNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.warns(UserWarning):
        MSUNetConfig.from_dict({**cfg.to_dict(), "from_the_future": 1})
    with pytest.raises(ValueError):
        MSUNetConfig(variant="nope")
    with pytest.raises(ValueError):
        MSUNetConfig(encoder="swin_micro", img_size=100)


def test_state_dict_roundtrip():
    a = tiny_model("full")
    a.update_endmembers(torch.randn(2, a.encoder.out_channels), torch.tensor([0, 3]))
    b = build_model(**{**a.cfg.to_dict()})
    b.load_state_dict(a.state_dict())
    x = make_batch(b=2)
    assert torch.allclose(a.predict(x["global"], x["local"][:, None]),
                          b.predict(x["global"], x["local"][:, None]))


def test_channels_last_and_bf16_autocast():
    m = tiny_model("full").to(memory_format=torch.channels_last)
    b = make_batch(b=2, p=2)
    cl = {k: (v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v)
          for k, v in b.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = m.losses(cl)
        out = m(cl["global"], cl["local"])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert out["abundances"].dtype == torch.float32
    _assert_simplex(out["abundances"], atol=1e-3)
    sum(losses.values()).backward()


def test_overfits_a_tiny_batch():
    """Full variant, GradNorm, 4 blocks: the reducible part of the decomposition loss
    (soft CE minus the targets' entropy = KL) and the pure CE both fall by >= 90 %."""
    m = tiny_model("full", drop_path=0.0, dropout=0.0)
    b = make_batch(b=4, p=4)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    gn = GradNorm(m.tasks, m.shared_layer().parameters())

    def kl():
        m.eval()
        with torch.no_grad():
            z = m(b["global"], b["local"])["pair_logits"][:, 0]
        m.train()
        return float(kl_to_target(z, b["fractions"]).mean())

    kl0, pure0 = kl(), None
    for _ in range(60):
        opt.zero_grad()
        losses = m.losses(b)
        pure0 = pure0 if pure0 is not None else float(losses["pure"].detach())
        gn.backward(losses)
        opt.step()
    assert kl() <= 0.1 * kl0, (kl0, kl())
    assert float(m.losses(b)["pure"].detach()) <= 0.1 * pure0
