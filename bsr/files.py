"""Files that are never seen half-written, and locks between the pipeline's parallel jobs."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import shutil
import tempfile
from pathlib import Path

from bsr import BsrError


# In every folder that bsr writes: an existing folder is replaced only if it holds this (or nothing).
OUTPUT_MARKER = ".bsr-output"


def check_output(path: str | os.PathLike, inputs=(), folder: bool = False) -> None:
    """Refuse, before any work, an output that bsr may not replace: one that is, or holds, one of `inputs`; a
    symbolic link; a non-empty folder that bsr did not write (no OUTPUT_MARKER); a file where a `folder`
    goes; or a path below a file. A mistyped --out must not delete anyone's files."""
    path = Path(path)
    for source in map(Path, inputs):
        if path.resolve() == source.resolve() or path.resolve() in source.resolve().parents:
            relation = "is" if path.resolve() == source.resolve() else "holds"
            raise BsrError(f"{path}: refused as an output, it {relation} the input {source}")
    if path.is_symlink():
        raise BsrError(f"{path}: is a symbolic link; refusing to replace it: choose another output")
    if path.is_dir() and any(path.iterdir()) and not (path / OUTPUT_MARKER).is_file():
        raise BsrError(f"{path}: exists and was not written by bsr (no {OUTPUT_MARKER} in it); refusing to "
                       f"replace it: choose another output, or remove it yourself")
    if folder and path.exists() and not path.is_dir():
        raise BsrError(f"{path}: is a file; the output is a folder: choose another output")
    blocking = next((p for p in path.absolute().parents if p.exists() and not p.is_dir()), None)
    if blocking:
        raise BsrError(f"{path}: cannot be written, {blocking} is a file, not a folder")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, inputs=(), folder: bool = False):
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    Works for files and folders (`folder`) alike, so a reader never sees a half-written output. What it may
    replace is checked first (`check_output`); a folder it writes holds OUTPUT_MARKER.
    """
    path = Path(path)
    check_output(path, inputs, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if target.is_dir():
            (target / OUTPUT_MARKER).write_text("written by bsr; bsr may replace this folder\n")
        if path.is_dir():
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
    except FileNotFoundError:
        raise BsrError(f"{path}: no such file") from None
    except pickle.UnpicklingError:
        raise BsrError(f"{path}: not a readable {kind} (it holds objects other than tensors and plain values; "
                       f"refused, since loading them could run code)") from None
    except Exception:  # truncated or garbage bytes
        size = path.stat().st_size
        reason = "an empty file" if size == 0 else f"{size} bytes that are not a whole PyTorch file"
        raise BsrError(f"{path}: not a readable {kind} ({reason})") from None
    missing = [key for key in keys if key not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise BsrError(f"{path}: not a bsr {kind} (missing {', '.join(missing)})")
    return state


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
