from lcz_model import bench


def test_bench_smoke_cpu():
    lines = []
    res = bench.run(encoder="swin_micro", device="cpu", batch=2, infer_batch=2, steps=1,
                    warmup=0, img_size=64, locals_per_block=2, fusion_dim=32, log=lines.append)
    assert res["infer_blocks_per_s"] > 0 and res["train_ms_per_block"] > 0
    assert res["infer_overhead"] > 0 and res["train_overhead"] > 0
    assert res["params_full"] > res["params_encoder"]
    assert any("blocks/s" in line for line in lines) and any("ms/block" in line for line in lines)
