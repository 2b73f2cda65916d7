"""Files that are never seen half-written, and locks between the pipeline's parallel jobs."""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from bsr import BsrError


# In every folder that bsr writes: an existing folder is replaced only if it holds this (or nothing).
OUTPUT_MARKER = ".bsr-output"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, inputs=()):
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    Works for files and directories alike, so a reader never sees a half-written output. An existing folder
    at `path` is replaced only if bsr wrote it (it holds OUTPUT_MARKER) or it is empty, and never when it is,
    or holds, one of `inputs`: a mistyped --out must not delete someone's images.
    """
    path = Path(path)
    for source in map(Path, inputs):
        if path.resolve() == source.resolve() or path.resolve() in source.resolve().parents:
            raise BsrError(f"{path}: refused as an output, it {'is' if path.resolve() == source.resolve() else 'holds'} "
                           f"the input {source}")
    if path.is_dir() and not path.is_symlink() and any(path.iterdir()) and not (path / OUTPUT_MARKER).is_file():
        raise BsrError(f"{path}: exists and was not written by bsr (no {OUTPUT_MARKER} in it); refusing to "
                       f"replace it: choose another output, or remove it yourself")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if target.is_dir():
            (target / OUTPUT_MARKER).write_text("written by bsr; bsr may replace this folder\n")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(path: Path, holder: str):
    """Hold `path` locked for this process, or fail at once naming the process that holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise BsrError(f"{path.parent} is in use by {handle.read().strip() or 'another process'} "
                           f"(lock {path})") from None
        handle.truncate(0)
        handle.write(holder + "\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock between processes (parallel jobs share the lock file and the download cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_torch_file(path: str | os.PathLike, kind: str, keys: tuple[str, ...]) -> dict:
    """A checkpoint or model that bsr saved, loaded onto the CPU (the caller moves states to its device) with
    `weights_only`, so that a crafted pickle cannot run code. Any failure is one error naming the file."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or garbage bytes, or a pickle that is more than weights
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        reason = "an empty file" if path.is_file() and path.stat().st_size == 0 else reason
        raise BsrError(f"{path}: not a readable {kind} ({reason[:200]})") from None
    missing = [key for key in keys if key not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise BsrError(f"{path}: not a bsr {kind} (missing {', '.join(missing)})")
    return state


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
