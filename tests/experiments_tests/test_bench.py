"""experiments.bench on CPU at toy size: its figures agree with the times it measured."""
import pytest

from experiments import bench


def test_bench_figures_follow_from_the_measured_times():
    lines = []
    res = bench.run(encoder="swin_micro", device="cpu", batch=2, infer_batch=3, steps=1,
                    warmup=0, img_size=64, locals_per_block=2, fusion_dim=32, log=lines.append)
    # every rate is the batch over the seconds measured, every overhead the ratio of two times
    assert res["infer_blocks_per_s"] == pytest.approx(3 / res["infer_s_per_call"])
    assert res["infer_bare_images_per_s"] == pytest.approx(3 * (1 + 2) / res["infer_bare_s_per_call"])
    assert res["infer_overhead"] == pytest.approx(res["infer_bare_blocks_per_s"] / res["infer_blocks_per_s"])
    assert res["train_ms_per_block"] == pytest.approx(1000 * res["train_s_per_step"] / 2)
    assert res["train_overhead"] == pytest.approx(res["train_ms_per_block"] / res["train_bare_ms_per_block"])
    # the timed training step really trained: weights moved, GradNorm's three weights sum to 3
    assert res["train_changed_weights"] is True
    assert set(res["gradnorm_weights"]) == {"global", "pure", "local"}
    assert sum(res["gradnorm_weights"].values()) == pytest.approx(3.0)
    assert res["params_full"] > res["params_encoder"]
    assert any(f"{res['infer_blocks_per_s']:.1f} blocks/s" in line for line in lines)
    assert any(f"{res['train_ms_per_block']:.2f} ms/block" in line for line in lines)


@pytest.mark.slow
def test_end_to_end_epoch_times_the_real_loader(tiny_pkg):
    from lcz_model.package import read_package

    res = bench.epoch(str(tiny_pkg), encoder="swin_micro", img_size=64, batch=4, device="cpu",
                      threads=1, log=lambda *_: None)
    pkg = read_package(tiny_pkg)
    assert res["train_items"] == len(pkg.split("train"))
    assert res["steps"] == -(-res["train_items"] // 4)
    assert res["epoch_ms_per_block"] == pytest.approx(1000 * res["epoch_seconds"] / res["train_items"])
