"""Files that are never seen half-written, and locks between the pipeline's parallel jobs."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import re
import shutil
import signal
import tempfile
import urllib.parse
from pathlib import Path

from bsr import BsrError


# In every folder that bsr writes, naming the verb that wrote it: only that verb replaces the folder or writes
# into it, so that `bsr upscale --out` cannot overwrite a downloaded test set, nor `bsr degrade --out` a run.
OUTPUT_MARKER = ".bsr-output"
MARKER_TEXT = "written by bsr {writer}; only `bsr {writer}` replaces this folder\n"
# What the markers of bsr 0.1 before verbs were named say: any verb may replace such a folder, as then.
LEGACY_MARKER = "written by bsr; bsr may replace this folder"
# A scheme before a colon: `runs:/…`, `models:/…`, `s3://…`, `file:///…` (a bare word like `C:` is one letter).
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def folder_writer(path: Path) -> str | None:
    """The verb that wrote `path` (a folder), from its OUTPUT_MARKER; None for no marker or a legacy one."""
    marker = path / OUTPUT_MARKER
    if not marker.is_file():
        return None
    found = re.match(r"written by bsr (\S+);", marker.read_text(errors="replace"))
    return found.group(1) if found else None


def mark_folder(path: Path, writer: str) -> None:
    (path / OUTPUT_MARKER).write_text(MARKER_TEXT.format(writer=writer))


def check_writer(path: str | os.PathLike, writer: str) -> None:
    """Refuse a folder that another verb wrote: `writer` may replace or write into its own folders only."""
    path = Path(path)
    other = folder_writer(path) if path.is_dir() else None
    if other is not None and other != writer:
        raise BsrError(f"{path}: was written by `bsr {other}`; `bsr {writer}` refuses to write into it: choose "
                       f"another output")


def local_path(source: str | os.PathLike) -> Path | None:
    """The file system path of an input or output: itself, a file:// URI's path, or None for another URI."""
    source = str(source)
    if source.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(source).path))
    return None if URI_SCHEME.match(source) and not Path(source).exists() else Path(source)


def check_against_inputs(outputs, inputs) -> None:
    """Refuse an output that is one of `inputs`, lies inside an input folder, or holds an input; and two
    outputs at one path. Paths are compared resolved, so a link to an input is that input."""
    resolved_inputs = [(source, path.resolve()) for source in inputs if (path := local_path(source))]
    seen = {}
    for output in outputs:
        out = Path(output).resolve()
        if out in seen:
            raise BsrError(f"{output}: named for two outputs ({seen[out]} and {output}); give each its own path")
        seen[out] = output
        for source, path in resolved_inputs:
            relation = "is" if out == path else "holds" if out in path.parents else \
                "lies inside" if path in out.parents else None
            if relation:
                raise BsrError(f"{output}: refused as an output, it {relation} the input {source}")


def check_output(path: str | os.PathLike, inputs=(), folder: bool = False, writer: str | None = None) -> None:
    """Refuse, before any work, an output that bsr may not replace: one that is, holds or lies in one of
    `inputs`; a symbolic link; a non-empty folder that bsr did not write (no OUTPUT_MARKER) or that another
    verb than `writer` wrote; a file where a `folder` goes, or a folder where a file goes; or a path below a
    file. A mistyped --out must not delete anyone's files."""
    path = Path(path)
    check_against_inputs([path], inputs)
    if path.is_symlink():
        raise BsrError(f"{path}: is a symbolic link; refusing to replace it: choose another output")
    if not folder and path.is_dir():
        raise BsrError(f"{path}: is a folder; the output is a file: choose another output")
    if path.is_dir() and any(path.iterdir()) and not (path / OUTPUT_MARKER).is_file():
        raise BsrError(f"{path}: exists and was not written by bsr (no {OUTPUT_MARKER} in it); refusing to "
                       f"replace it: choose another output, or remove it yourself")
    if writer:
        check_writer(path, writer)
    if folder and path.exists() and not path.is_dir():
        raise BsrError(f"{path}: is a file; the output is a folder: choose another output")
    blocking = next((p for p in path.absolute().parents if p.exists() and not p.is_dir()), None)
    if blocking:
        raise BsrError(f"{path}: cannot be written, {blocking} is a file, not a folder")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, inputs=(), folder: bool = False, writer: str | None = None):
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    Works for files and folders (`folder`, written by the verb `writer`) alike, so a reader never sees a
    half-written output. What it may replace is checked first (`check_output`); a folder it writes holds
    OUTPUT_MARKER, naming `writer`.
    """
    path = Path(path)
    if folder and not writer:
        raise ValueError("a folder output needs the verb that writes it")
    check_output(path, inputs, folder, writer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if folder:
            target.mkdir(exist_ok=True)
            mark_folder(target, writer)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's cancel, Snakemake stopping its jobs), raised wherever the verb is, so that every
    `finally` runs: temporary files go, MLflow runs close."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM ended


@contextlib.contextmanager
def sigterm_raises():
    def handler(signum, frame):
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
