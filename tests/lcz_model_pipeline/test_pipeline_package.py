"""Dataset package: the synthetic writer follows dataset-package.md; the reader rejects broken ones."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lcz_model.classes import KEYS
from lcz_model.package import (PackageError, package_checksum, read_package,
                               verify_checksums)


def test_synthetic_package_layout_and_sha256sum(synthetic_pkg):
    for rel in ("README.md", "LICENSE", "CITATION.cff", "croissant.json", "blocks.gpkg",
                "labels.csv", "annotations.csv", "agreement.json", "splits/train.txt",
                "splits/test.txt", "SHA256SUMS"):
        assert (synthetic_pkg / rel).is_file(), rel
    assert "SYNTHETIC" in (synthetic_pkg / "README.md").read_text()
    if shutil.which("sha256sum"):
        r = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=synthetic_pkg,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    verify_checksums(synthetic_pkg)
    pkg = read_package(synthetic_pkg, verify=True)
    assert sum(pkg.meta["counts"][s] for s in ("train", "val", "test")) == len(pkg) > 10
    assert package_checksum(synthetic_pkg) == package_checksum(synthetic_pkg)
    b = pkg.blocks[0]
    assert b.fractions.shape == (17,) and abs(b.fractions.sum() - 1) < 1e-9
    ch = b.load_chips()
    assert ch.global_rgb.shape == (64, 64, 3) and ch.mask.shape == (64, 64) and ch.local


def test_package_opens_with_geopandas_and_pandas_alone(synthetic_pkg):
    """A stranger's script: no project code on the path."""
    script = textwrap.dedent(f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", ".")]
        import geopandas as gpd, pandas as pd, numpy as np
        from PIL import Image
        root = {str(synthetic_pkg)!r}
        g = gpd.read_file(root + "/blocks.gpkg")
        lab = pd.read_csv(root + "/labels.csv", dtype={{"block_id": str}})
        assert list(lab.columns[:1]) == ["block_id"] and len(lab.columns) == 18
        assert np.allclose(lab.iloc[:, 1:].sum(axis=1), 1, atol=1e-9)
        assert set(g.block_id) == set(lab.block_id)
        assert g.crs is not None and g.crs.is_projected
        for c in ("split", "area_m2", "pure", "dominant", "n_annotations", "agreement"):
            assert c in g.columns, c
        tr = open(root + "/splits/train.txt").read().split()
        te = open(root + "/splits/test.txt").read().split()
        va = open(root + "/splits/val.txt").read().split()
        assert not set(tr) & set(te) and not set(va) & (set(tr) | set(te))
        assert set(tr) | set(va) | set(te) == set(lab.block_id)
        im = Image.open(root + "/images/global/" + lab.block_id[0] + ".png")
        assert im.mode == "RGB"
        print("ok", len(lab))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")


@pytest.fixture
def pkg_copy(synthetic_pkg, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(synthetic_pkg, dst)
    return dst


def _rewrite_labels(path, fn):
    lines = (path / "labels.csv").read_text().splitlines()
    (path / "labels.csv").write_text("\n".join(fn(lines)) + "\n")


def test_reader_rejects_fractions_not_summing_to_one(pkg_copy):
    def bump(lines):
        cells = lines[1].split(",")
        cells[1] = repr(float(cells[1]) + 1e-6)
        lines[1] = ",".join(cells)
        return lines
    _rewrite_labels(pkg_copy, bump)
    bid = (pkg_copy / "labels.csv").read_text().splitlines()[1].split(",")[0]
    with pytest.raises(PackageError, match=rf"line 2 \(block {bid}\): fractions sum to"):
        read_package(pkg_copy)


def test_reader_rejects_unknown_and_missing_columns(pkg_copy):
    _rewrite_labels(pkg_copy, lambda ls: [ls[0].replace("lcz_g", "lcz_h")] + ls[1:])
    with pytest.raises(PackageError, match=r"unknown columns \['lcz_h'\]; missing columns "
                                           r"\['lcz_g'\]"):
        read_package(pkg_copy)


def test_reader_rejects_missing_images_and_files(pkg_copy):
    bid = read_package(pkg_copy).blocks[3].block_id
    (pkg_copy / "images" / "masks" / f"{bid}.png").unlink()
    with pytest.raises(PackageError, match=rf"images/masks/{bid}.png"):
        read_package(pkg_copy)
    (pkg_copy / "splits" / "test.txt").unlink()
    with pytest.raises(PackageError, match=r"splits/test.txt is missing"):
        read_package(pkg_copy)
    with pytest.raises(PackageError, match="does not exist"):
        read_package(pkg_copy / "nope")


def test_reader_rejects_bad_splits(pkg_copy):
    pkg = read_package(pkg_copy)
    tr = pkg.split("train")[0].block_id
    with open(pkg_copy / "splits" / "test.txt", "a") as f:
        f.write(f"{tr}\n")
    with pytest.raises(PackageError, match="in both splits"):
        read_package(pkg_copy)
    with open(pkg_copy / "splits" / "test.txt", "a") as f:
        f.write("no-such-block\n")
    with pytest.raises(PackageError, match="not in labels.csv"):
        read_package(pkg_copy)


def test_checksum_verification_catches_a_changed_file(pkg_copy):
    read_package(pkg_copy, verify=True)
    before = package_checksum(pkg_copy)
    with open(pkg_copy / "README.md", "a") as f:
        f.write("edited\n")
    with pytest.raises(PackageError, match="README.md: checksum differs"):
        read_package(pkg_copy, verify=True)
    (pkg_copy / "extra.txt").write_text("x")
    with pytest.raises(PackageError, match="extra.txt: present but not listed"):
        verify_checksums(pkg_copy)
    assert package_checksum(pkg_copy) == before        # identity = SHA256SUMS as shipped


def test_fractions_array_in_class_order(synthetic_pkg):
    import csv

    pkg = read_package(synthetic_pkg)
    rows = list(csv.DictReader(open(synthetic_pkg / "labels.csv")))
    want = np.array([[float(r[k]) for k in KEYS] for r in rows])
    assert np.array_equal(pkg.fractions("all"), want)
    assert all(b.pure == (b.fractions.max() == 1.0) for b in pkg.blocks)


def test_synthetic_package_is_deterministic(tmp_path):
    from fixtures.synthetic_package import write_synthetic_package

    a = write_synthetic_package(tmp_path / "a", n_blocks=8, seed=5, size=64)
    b = write_synthetic_package(tmp_path / "b", n_blocks=8, seed=5, size=64)
    for rel in ("labels.csv", "splits/train.txt", "splits/test.txt"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ga = sorted(p.relative_to(a) for p in (a / "images").rglob("*.png"))
    assert ga == sorted(p.relative_to(b) for p in (b / "images").rglob("*.png"))
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in ga)
    with pytest.raises(FileExistsError, match="exists"):
        write_synthetic_package(a, n_blocks=8, seed=5, size=64)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp left
