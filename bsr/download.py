"""`bsr download`: fetch a dataset from https://, file:// or package://, or check one placed by hand (manual://),
into a folder of HR images.

- A download is cached under the sha256 of its whole URL plus, for people, the file name
  (`<16 hex>-benchmark.tar`), so two URLs never share a file. It resumes from a `.part` file with a Range
  request, and shows progress.
- A transfer is complete only at the length the server announced. `.part.json` remembers that length, so a body
  shorter than its Content-Length is not complete, nor is a later try sent without one. A resume answered from
  another offset (a 206 whose Content-Range does not continue the `.part` file, a 200, a 416) starts over, and
  says so.
- A transfer slower than MIN_RATE bytes/s over STALL_WINDOW seconds, or silent that long, stops with an error
  (rerun to resume).
- The source's sha256 (of the archive file; for a folder, of sorted name/sha lines of exactly the files taken)
  is checked against the config, else against `datasets.lock`. The lock records a first download only once it
  is proven good: extracted, counted and every image read.
- A download that fails its checksum or is not a readable archive is deleted from the cache, never reused.
- Archives (zip, tar, tar.gz) are checked before anything is extracted: an absolute path, a `..` component, a
  link, a special file or a name that appears twice is refused, and so are entries to extract whose declared
  sizes add up to more than `max_bytes` (default MAX_BYTES) or that expand more than MAX_RATIO:1 (each against its
  compressed size, a tar entry against the whole archive, and all of them together against the archive file;
  entries up to RATIO_MIN_SIZE are exempt). Extraction counts the bytes it writes against the declared sizes, so a
  header that lies gets no further.
- Images that share a stem (`a.png`, `a.bmp`) are refused, in archives and folders alike: the LR images are
  named by stem, so one would overwrite the other.
- The image count is checked, every image is read, and the dataset folder appears only when everything
  succeeded.
- `manual://FOLDER` (in the config `source: manual`, FOLDER being `layout.manual_dir`) downloads nothing: it
  checks the images the user put in FOLDER (count, and sha256 as above), and says what to put where when any
  is missing.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import importlib.util
import json
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from bsr import BsrError, layout
from bsr.files import atomic_path, check_output, file_lock, write_text
from bsr.images import IMAGE_SUFFIXES, read_image

CHUNK = 1 << 20
MIN_RATE = 1024  # bytes/s averaged over STALL_WINDOW: slower is a stall (urlopen's timeout is per read)
STALL_WINDOW = 30.0  # seconds; also the longest one read may wait
MAX_BYTES = 20 << 30  # default of datasets.<name>.max_bytes; DIV2K's train HR zip expands to about 3.5 GB
MAX_RATIO = 200  # expansion over compressed size; a deflated image is near 1:1, a bomb near 1000:1
RATIO_MIN_SIZE = 1 << 20  # smaller entries are not held to MAX_RATIO: a few KB of text compress arbitrarily well

# Where to get the datasets whose licence forbids redistribution (`source: manual`).
OBTAIN = {
    "Manga109": "Manga109 is distributed by its authors, on request and for academic use only, at "
                "http://www.manga109.org/en/download.html; the SR benchmark takes one image per volume.",
}


class BadDownload(BsrError):
    """The bytes themselves are wrong (checksum, unreadable archive): a cached copy must not be reused."""


class Member(NamedTuple):
    name: str
    is_link: bool
    is_special: bool
    is_dir: bool
    size: int  # declared, uncompressed
    packed: int  # compressed size; a tar's entries share one stream, so there the archive's size
    entry: zipfile.ZipInfo | tarfile.TarInfo


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_folder(folder: Path, names: list[str]) -> str:
    """A digest of the files a folder source takes: sorted 'name sha256' lines, so that it does not depend on
    timestamps."""
    lines = "".join(f"{name} {sha256_file(folder / name)}\n" for name in sorted(names))
    return hashlib.sha256(lines.encode()).hexdigest()


def cache_path(url: str, cache_dir: Path) -> Path:
    name = PurePosixPath(unquote(urlparse(url).path)).name or "download"
    return Path(cache_dir) / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def content_range(response) -> tuple[int, int | None] | None:
    """(first byte, total or None) of a 206 response's Content-Range; None when it has none that parses."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (response.headers.get("Content-Range") or "").strip())
    return (int(match[1]), None if match[2] == "*" else int(match[2])) if match else None


def start_over(url: str, dest: Path, why: str) -> None:
    print(f"{url}: {why}; starting over", file=sys.stderr)
    dest.with_name(dest.name + ".part").unlink()
    http_fetch(url, dest)


def http_fetch(url: str, dest: Path) -> None:
    """Download `url` to `dest`, resuming from `dest.part`; a short transfer is an error, never a file."""
    part, note = dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")
    have = part.stat().st_size if part.exists() else 0
    total = json.loads(note.read_text())["total"] if note.exists() else None
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=STALL_WINDOW)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have and have == total:  # the .part file was complete
            part.replace(dest)
            note.unlink()
            return
        if err.code == 416 and have:
            return start_over(url, dest, f"the server refused to resume from byte {have} (HTTP 416)")
        raise BsrError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise BsrError(f"{url}: cannot connect ({getattr(err, 'reason', err)}); to work offline, put the file "
                       f"there at {dest}, or point the dataset's source at a file:// copy") from None
    with response:
        length = response.headers.get("Content-Length")
        announced = int(length) if length is not None else None
        if have and response.status == 206:
            start, range_total = content_range(response) or (None, None)
            if start != have or (range_total is not None and total is not None and range_total != total):
                return start_over(url, dest, f"the server answered a resume from byte {have} of {total} with "
                                             f"Content-Range {response.headers.get('Content-Range')!r}")
            if range_total is not None:
                announced = range_total
            elif announced is not None:
                announced += have
        elif have:
            print(f"{url}: the server ignored the resume from byte {have}; starting over", file=sys.stderr)
            have = 0
        if announced is not None:
            total = announced
            write_text(note, json.dumps({"url": url, "total": total}) + "\n")
        with open(part, "ab" if have else "wb") as out, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, mininterval=1) as bar:
            try:
                mark, marked = time.monotonic(), bar.n
                for block in iter(lambda: response.read1(CHUNK), b""):  # read1: returns what has arrived
                    out.write(block)
                    bar.update(len(block))
                    now = time.monotonic()
                    if now - mark >= STALL_WINDOW:
                        if bar.n - marked < MIN_RATE * (now - mark):
                            raise BsrError(f"{url}: stalled at byte {bar.n}, {bar.n - marked} bytes in the last "
                                           f"{now - mark:.3g} s (under {MIN_RATE} bytes/s); rerun to resume")
                        mark, marked = now, bar.n
            except (OSError, ValueError, http.client.HTTPException) as err:
                raise BsrError(f"{url}: transfer broken off after {bar.n} bytes ({err}); rerun to resume") from None
    got = part.stat().st_size
    if total is not None and got != total:
        raise BsrError(f"{url}: truncated transfer, got {got} of {total} bytes; rerun to resume")
    part.replace(dest)
    note.unlink(missing_ok=True)


def source_path(source: str) -> Path:
    """The local path of a file://, manual://, package:// or plain-path source."""
    url = urlparse(source)
    if url.scheme in ("file", "manual"):
        return Path(unquote(url.netloc + url.path))
    if url.scheme == "package":
        spec = importlib.util.find_spec(url.netloc)
        if spec is None or spec.origin is None:
            raise BsrError(f"{source}: Python package {url.netloc!r} is not installed")
        return Path(spec.origin).parent / url.path.lstrip("/")
    if url.scheme == "":
        return Path(source)
    raise BsrError(f"{source}: unsupported source scheme {url.scheme!r} (https, http, file, package or manual)")


@contextlib.contextmanager
def local_source(source: str, cache_dir: Path):
    """The local file or folder of a source while the block runs. A download is held under its cache lock, so
    that the jobs sharing an archive take turns and none sees it deleted."""
    if urlparse(source).scheme in ("http", "https"):
        dest = cache_path(source, cache_dir)
        with file_lock(dest.with_name(f".{dest.name}.lock")):
            if not dest.exists():
                http_fetch(source, dest)
            yield dest
        return
    path = source_path(source)
    if not path.exists():
        raise BsrError(f"{source}: {path} does not exist")
    yield path


def folder_names(folder: Path, files: list[str] | None) -> list[str]:
    """What a folder source takes: `files`, else every image directly inside."""
    return list(files) if files else sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def manual_problem(name: str, spec: dict, folder: Path) -> str | None:
    """What a manual dataset's folder lacks, said as what to put where; None when nothing is missing."""
    src = folder / (spec.get("subdir") or "")
    names = folder_names(src, spec.get("files")) if src.is_dir() else []
    present = [n for n in names if (src / n).is_file()]
    if len(present) == len(names) == spec["images"]:
        return None
    what = ", ".join(spec["files"]) if spec.get("files") else f"the {spec['images']} HR images (PNG or BMP)"
    found = f"it holds {len(present)}" if src.is_dir() else "it does not exist"
    return " ".join([f"{name}: the source is manual, so nothing is downloaded: put {what} directly in {src}/ "
                     f"({found}).", OBTAIN.get(name, "")]).strip()


def manual_problems(cfg: dict) -> list[str]:
    """For each manual dataset of a pipeline config not in place yet, what its download job will find missing."""
    d = cfg["data_dir"]
    return [problem for name, spec in cfg["datasets"].items()
            if spec["source"] == "manual" and not Path(layout.hr_dir(d, name)).is_dir()
            and (problem := manual_problem(name, spec, Path(layout.manual_dir(d, name))))]


def unsafe_member(name: str, is_link: bool, is_special: bool) -> str | None:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")):
        return "an absolute path"
    if ".." in path.parts:
        return "a '..' component"
    if is_link:
        return "a link"
    if is_special:
        return "a device or special file"
    return None


def in_subdir(name: str, subdir: str) -> bool:
    """Whether archive entry `name` is a file directly inside `subdir` ('' for the archive's top level)."""
    parent = str(PurePosixPath(name.removeprefix("./")).parent)
    return parent == (subdir.strip("/") or ".")


def check_stems(where: str, names: list[str]) -> None:
    stems: dict[str, str] = {}
    for path in map(PurePosixPath, names):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            other = stems.setdefault(path.stem, path.name)
            if other != path.name:
                raise BsrError(f"{where}: {other} and {path.name} share the stem {path.stem!r}; the LR images are "
                               f"named by stem, so one would overwrite the other")


def check_members(archive: Path, members: list[Member], subdir: str, max_bytes: int, dataset: str) -> list[Member]:
    """The members to extract (the files directly inside `subdir`), once every member is safe and those are
    within the limits."""
    seen = set()
    for m in members:
        problem = unsafe_member(m.name, m.is_link, m.is_special)
        if problem:
            raise BsrError(f"{archive}: refused to extract entry {m.name!r}: {problem}")
        if not m.is_dir and str(PurePosixPath(m.name)) in seen:
            raise BsrError(f"{archive}: refused, entry {m.name!r} appears twice")
        seen.add(str(PurePosixPath(m.name)))
    taken = [m for m in members if not m.is_dir and in_subdir(m.name, subdir)]
    check_stems(f"{archive}: {subdir or '/'}", [m.name for m in taken])
    total = sum(m.size for m in taken)
    if total > max_bytes:
        raise BsrError(f"{archive}: refused, the {len(taken)} entries under {subdir or '/'!r} declare {total} bytes, "
                       f"more than datasets.{dataset}.max_bytes ({max_bytes})")
    for what, size, packed in [*((f"entry {m.name!r}", m.size, m.packed) for m in taken),
                               (f"the entries under {subdir or '/'!r}", total, archive.stat().st_size)]:
        if size > RATIO_MIN_SIZE and size > MAX_RATIO * packed:
            raise BsrError(f"{archive}: refused, {what} would expand {packed} bytes to {size}, more than "
                           f"{MAX_RATIO}:1")
    return taken


def copy_member(archive: Path, member: Member, src, dest: Path) -> None:
    """Copy one entry into `dest`, counting the bytes: one that holds more than its header declares is refused,
    so the declared sizes checked before extraction bound what is written."""
    written = 0
    with open(dest / PurePosixPath(member.name).name, "wb") as out:
        for block in iter(lambda: src.read(CHUNK), b""):
            written += len(block)
            if written > member.size:
                raise BsrError(f"{archive}: refused, entry {member.name!r} holds more than the {member.size} bytes "
                               f"its header declares")
            out.write(block)


def extract_archive(archive: Path, subdir: str, dest: Path, max_bytes: int, dataset: str) -> None:
    """Extract the regular files directly inside `subdir` into `dest`, after checking every member."""
    size = archive.stat().st_size
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                members = [Member(i.filename, (i.external_attr >> 16) & 0o170000 == 0o120000, False, i.is_dir(),
                                  i.file_size, i.compress_size, i) for i in z.infolist()]
                for m in check_members(archive, members, subdir, max_bytes, dataset):
                    with z.open(m.entry) as src:
                        copy_member(archive, m, src, dest)
            return
        with tarfile.open(archive) as t:
            members = [Member(m.name, m.issym() or m.islnk(), not (m.isfile() or m.isdir() or m.issym() or m.islnk()),
                              m.isdir(), m.size, size, m) for m in t.getmembers()]
            for m in check_members(archive, members, subdir, max_bytes, dataset):
                with t.extractfile(m.entry) as src:
                    copy_member(archive, m, src, dest)
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as err:
        raise BadDownload(f"{archive}: not a readable zip or tar archive ({err})") from None


def check_lock(name: str, source: str, actual: str, lock_path: Path, pin: bool = False) -> None:
    """Against the sha256 that datasets.lock records for this dataset and source; with `pin`, record it when
    there is none (only for a dataset proven good)."""
    with file_lock(lock_path.with_name(lock_path.name + ".flock")):
        lock = json.loads(lock_path.read_text()) if lock_path.exists() else {}
        recorded = lock.get(name)
        if recorded and recorded["source"] == source:
            if recorded["sha256"] != actual:
                raise BadDownload(f"{source}: sha256 {actual} differs from {recorded['sha256']} recorded in "
                                  f"{lock_path} for {name}; delete that entry if the change is intended")
        elif pin:
            lock[name] = {"source": source, "sha256": actual}
            write_text(lock_path, json.dumps(lock, indent=2, sort_keys=True) + "\n")


def check_file_list(name: str, files: list[str]) -> None:
    """`files` name images inside the source folder (and its subdir), each once."""
    for f in files:
        path = PurePosixPath(f)
        if path.is_absolute() or ".." in path.parts:
            raise BsrError(f"datasets.{name}.files: {f!r} must be a path inside the source folder")
    repeated = sorted({f for f in files if files.count(f) > 1})
    if repeated:
        raise BsrError(f"datasets.{name}.files: {', '.join(repeated)} listed more than once")


def download_dataset(name: str, spec: dict, out_dir, lock_path, cache_dir) -> int:
    """Fetch, verify and unpack one dataset into `out_dir`; return its image count."""
    source, subdir, files, expected = spec["source"], spec.get("subdir") or "", spec.get("files"), spec.get("sha256")
    lock_path, cache_dir = Path(lock_path), Path(cache_dir)
    check_output(out_dir, folder=True, writer="download")
    check_file_list(name, files or [])
    if urlparse(source).scheme == "manual":
        placed = source_path(source)
        print(f"{name}: the source is manual, nothing is downloaded: checking the images placed in {placed}",
              file=sys.stderr)
        problem = manual_problem(name, spec, placed)
        if problem:
            raise BsrError(problem)
    with local_source(source, cache_dir) as local:
        try:
            if local.is_dir():
                folder = local / subdir
                if not folder.is_dir():
                    raise BsrError(f"{source}: has no folder {subdir!r}")
                names = folder_names(folder, files)
                missing = [n for n in names if not (folder / n).is_file()]
                if missing:
                    raise BsrError(f"{source}: {folder} lacks {', '.join(missing)}")
                check_stems(source, names)
                digest = sha256_folder(folder, names)
            else:
                digest = sha256_file(local)
            if expected and digest != expected:
                raise BadDownload(f"{source}: sha256 {digest} does not match datasets.{name}.sha256 {expected}")
            if not expected:
                check_lock(name, source, digest, lock_path)
            with atomic_path(out_dir, folder=True, writer="download") as tmp:
                tmp.mkdir()
                if local.is_dir():
                    origins = {PurePosixPath(n).name: folder / n for n in names}
                    for name_in_tmp, origin in origins.items():
                        shutil.copyfile(origin, tmp / name_in_tmp)
                else:
                    extract_archive(local, subdir, tmp, spec.get("max_bytes") or MAX_BYTES, name)
                images = sorted(p for p in tmp.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                for extra in set(tmp.iterdir()) - set(images):
                    extra.unlink()
                if len(images) != spec["images"]:
                    raise BsrError(f"{source}: found {len(images)} images under {subdir or '/'!r}, "
                                   f"datasets.{name}.images expects {spec['images']}")
                for image in images:  # every image must be readable as the pipeline will read it
                    try:
                        read_image(image)
                    except BsrError as err:  # named where the user can find it, not by its temporary copy
                        where = origins[image.name] if local.is_dir() else f"{image.name} in {source}"
                        raise BsrError(str(err).replace(str(image), str(where), 1)) from None
                if not expected:
                    check_lock(name, source, digest, lock_path, pin=True)
        except BadDownload:
            if urlparse(source).scheme in ("http", "https"):
                local.unlink()
            raise
    return len(images)
