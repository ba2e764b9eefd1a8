"""Atomic writes: a file or a folder appears under its final name complete, or not at all.

Everything is written under a temporary name in the target's own folder (so the final
``os.replace`` is a rename on one file system) and renamed into place only when the write
succeeded; on any exception the temporary file or folder is removed and the target is untouched.

    atomic_write_text(path, text)              # whole contents at hand
    with atomic_file(path) as tmp:             # a writer that wants a path (PIL, GDAL, joblib)
        image.save(tmp, format="PNG")
    with atomic_dir(folder) as tmp:            # a folder of files (a dataset package, maps)
        (tmp / "a.csv").write_text(...)
"""
from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_file", "atomic_write_bytes", "atomic_write_text", "atomic_dir", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"


def _temp_name(path: Path, tag: str) -> Path:
    # hidden, unique, and ending in the target's suffix (writers that choose a format by the
    # file name, e.g. GDAL or joblib, see the same suffix as the final name)
    return path.with_name(f".{path.stem}.{tag}{path.suffix}")


@contextmanager
def atomic_file(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception it is
    renamed to ``path`` (replacing an old file). ``fsync`` flushes it to disk first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, f"{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_file(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


@contextmanager
def atomic_dir(path: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``path`` (``.<name>.<pid>.partial``); when the block
    ends without an exception it is renamed to ``path``.

    An existing ``path`` is refused (FileExistsError, nothing written) unless ``replace``: then
    the old folder is swapped out and removed only after the new one is in place. Partial
    folders left by earlier interrupted runs for the same target are removed first.
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*{PARTIAL_SUFFIX}"):
        if not _writer_alive(stale.name):  # never a folder another live writer is filling
            shutil.rmtree(stale, ignore_errors=True)
    run = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # unique per call: threads of one process too
    tmp = path.parent / f".{path.name}.{run}{PARTIAL_SUFFIX}"
    old = path.parent / f".{path.name}.{run}.old{PARTIAL_SUFFIX}"
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            if not replace:
                raise FileExistsError(f"{path} exists (it appeared while this was being written?); "
                                      "nothing was replaced")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
        else:
            os.replace(tmp, path)
    finally:
        for left in (tmp, old):
            if left.exists():
                shutil.rmtree(left, ignore_errors=True)


def _writer_alive(name: str) -> bool:
    """Whether the process that named this partial folder (`.<target>.<pid>-<id>[.old].partial`) runs."""
    for part in reversed(name.removesuffix(PARTIAL_SUFFIX).split(".")):
        pid = part.split("-")[0]
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
    return False
