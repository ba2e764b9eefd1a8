import pytest
import torch

from lcz_model.encoders import (ENCODERS, build_encoder, load_encoder_checkpoint, save_encoder_weights,
                                window_for)

from .conftest import SIZE, tiny_model


def test_registry_names():
    assert ENCODERS["swin_tiny"]["timm_name"] == "swin_tiny_patch4_window7_224"
    assert ENCODERS["swin_tiny"]["img_size"] == 256 and ENCODERS["swin_tiny"]["window_size"] == 8
    assert "swin_micro" in ENCODERS


def test_window_for():
    assert window_for(256, 8) == 8
    assert window_for(128, 8) == 4
    assert window_for(64, 8) == 2
    with pytest.raises(ValueError):
        window_for(100, 8)


def test_features_are_nchw_four_stages():
    enc = build_encoder("swin_micro", img_size=SIZE)
    feats = enc(torch.randn(2, 3, SIZE, SIZE))
    assert [f.shape[1] for f in feats] == [32, 64, 128, 256] == enc.channels
    assert [f.shape[2] for f in feats] == [16, 8, 4, 2]
    assert enc.reductions == [4, 8, 16, 32]
    assert any(p is q for p in enc.last_stage().parameters() for q in enc.parameters())


def test_micro_128_uses_window_4():
    enc = build_encoder("swin_micro", img_size=128)
    assert enc.window_size == 4
    assert enc(torch.randn(1, 3, 128, 128))[-1].shape[-2:] == (4, 4)


def test_normalise_uses_imagenet_statistics_and_zeroes_the_outside():
    import numpy as np

    from lcz_model.data import MEAN, STD, normalise

    img = np.full((2, 2, 3), 255, dtype=np.uint8)
    img[0, 0] = 0                                   # outside the block
    y = normalise(img)
    assert y.dtype == torch.float32
    assert torch.allclose(y[:, 1, 1], torch.tensor((1 - MEAN) / STD))
    assert (y[:, 0, 0] == 0).all()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_saved_encoder_weights_load_back_identical(tmp_path):
    """The warm start's one format: what save_encoder_weights writes (from a model or from a
    training run's checkpoint) loads back with load_encoder_checkpoint to identical weights."""
    model = tiny_model("full")
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))                 # not the init a fresh encoder repeats
    from_model = save_encoder_weights(model, tmp_path / "a" / "encoder_weights.pt")
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "model_config": model.cfg.to_dict()}, run / "checkpoint.pt")
    from_run = save_encoder_weights(run, run / "encoder_weights.pt")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "encoder_weights.pt"]   # no temp left
    for path in (from_model, from_run):
        enc = load_encoder_checkpoint(build_encoder("swin_micro", img_size=SIZE), path)
        assert _same_weights(enc.body, model.encoder.body)
    assert torch.load(from_model, weights_only=True).keys() == model.encoder.body.state_dict().keys()
    with pytest.raises(TypeError):
        save_encoder_weights(torch.nn.Linear(2, 2), tmp_path / "x.pt")


def test_checkpoint_roundtrip(tmp_path):
    a = build_encoder("swin_micro", img_size=SIZE)
    path = tmp_path / "enc.pt"
    torch.save(a.state_dict(), path)
    b = build_encoder("swin_micro", img_size=SIZE, checkpoint=str(path))
    c = build_encoder("swin_micro", img_size=SIZE)  # fresh random init differs
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.filterwarnings("ignore::UserWarning")   # timm's table resize warns about torch
def test_checkpoint_timm_classifier_layout(tmp_path):
    """A timm Swin classifier state_dict (layers.N., head, final norm) loads; the relative-
    position tables are resized when the window differs (window 2 at 64 px -> 4 at 128 px)."""
    import timm

    clf = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=17,
                            img_size=SIZE, window_size=2, embed_dim=32, depths=(1, 1, 1, 1),
                            num_heads=(1, 2, 4, 8))
    path = tmp_path / "clf.pth"
    torch.save({"model": clf.state_dict()}, path)
    enc = build_encoder("swin_micro", img_size=SIZE, checkpoint=str(path))
    assert torch.equal(enc.body.patch_embed.proj.weight, clf.patch_embed.proj.weight)
    assert torch.equal(enc.body.layers_3.blocks[0].mlp.fc2.weight,
                       clf.layers[3].blocks[0].mlp.fc2.weight)
    enc128 = build_encoder("swin_micro", img_size=128, checkpoint=str(path))
    assert torch.equal(enc128.body.layers_2.blocks[0].mlp.fc1.weight,
                       clf.layers[2].blocks[0].mlp.fc1.weight)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_encoder("swin_micro", img_size=SIZE, checkpoint=str(tmp_path / "nope.pt"))
    path = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), path)
    with pytest.raises(ValueError, match="lacks"):
        build_encoder("swin_micro", img_size=SIZE, checkpoint=str(path))
    with pytest.raises(KeyError):
        build_encoder("resnet_nope")
