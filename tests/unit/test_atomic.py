"""lcz_model.atomic: a target is never half-written, old content is replaced, temps are removed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lcz_model.atomic import atomic_dir, atomic_file, atomic_write_bytes, atomic_write_text


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic_write_text(target, "old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _names(target.parent) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "model.joblib"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_file(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".joblib" and tmp.name.startswith(".")
            tmp.write_text("half of the new")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["model.joblib"]


def test_a_failed_first_write_leaves_no_target(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "a.png", fsync=True) as tmp:
            tmp.write_bytes(b"\x89PNG")
            raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_dir_appears_whole_or_not_at_all(tmp_path):
    with atomic_dir(tmp_path / "pkg") as d:
        (d / "a.txt").write_text("a")
        assert not (tmp_path / "pkg").exists()
    assert (tmp_path / "pkg" / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "other") as d:
            (d / "a.txt").write_text("a")
            raise RuntimeError("killed")
    assert _names(tmp_path) == ["pkg"]


def test_dir_refuses_an_existing_target_unless_replace(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "old.txt").write_text("old")
    with pytest.raises(FileExistsError):
        with atomic_dir(tmp_path / "pkg") as d:
            (d / "new.txt").write_text("new")
    assert _names(tmp_path / "pkg") == ["old.txt"] and _names(tmp_path) == ["pkg"]
    with atomic_dir(tmp_path / "pkg", replace=True) as d:
        (d / "new.txt").write_text("new")
    assert _names(tmp_path / "pkg") == ["new.txt"] and _names(tmp_path) == ["pkg"]
    # a failed replacement keeps the old folder
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "pkg", replace=True) as d:
            raise RuntimeError("killed")
    assert _names(tmp_path / "pkg") == ["new.txt"] and _names(tmp_path) == ["pkg"]


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_dir_removes_partial_folders_of_killed_runs(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".pkg.{dead}.partial").mkdir()
    (tmp_path / f".pkgother.{dead}.partial").mkdir()        # another target's: kept
    with atomic_dir(tmp_path / "pkg"):
        pass
    assert _names(tmp_path) == [f".pkgother.{dead}.partial", "pkg"]


def test_dir_never_removes_a_live_writers_folder_and_calls_never_collide(tmp_path):
    live = tmp_path / f".pkg.{os.getpid()}-0000beef.partial"  # another writer in this very process
    live.mkdir()
    with atomic_dir(tmp_path / "a", replace=True) as first, atomic_dir(tmp_path / "a", replace=True) as second:
        assert first != second                               # two writers of one target, one process
    with atomic_dir(tmp_path / "pkg"):
        pass
    assert live.is_dir()
