"""`bsr download`: fetch a dataset from https://, file:// or package:// into a folder of HR images.

- Downloads go to a cache folder, resume from a `.part` file with HTTP Range requests, and show progress.
- The source's sha256 (of the archive file; of a sorted name/sha list for a folder) is checked against the
  config, else against `datasets.lock`, where the first download records it.
- Archives (zip, tar, tar.gz) are checked before anything is extracted: an absolute path, a `..` component,
  a link or a special file is refused.
- The image count is checked, and the dataset folder appears only when everything succeeded.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from bsr import BsrError
from bsr.files import atomic_path, file_lock
from bsr.images import IMAGE_SUFFIXES, read_image

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_folder(folder: Path, files: list[str] | None = None) -> str:
    """A digest of a folder's files: sorted 'name sha256' lines, so that it does not depend on timestamps."""
    names = sorted(files) if files else sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    lines = "".join(f"{name} {sha256_file(folder / name)}\n" for name in names)
    return hashlib.sha256(lines.encode()).hexdigest()


def http_fetch(url: str, dest: Path) -> None:
    """Download `url` to `dest`, resuming from `dest.part`; a short transfer is an error, never a file."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the .part file is already complete
            part.replace(dest)
            return
        raise BsrError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise BsrError(f"{url}: cannot connect ({getattr(err, 'reason', err)})") from None
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if have else "wb") as out, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, mininterval=1) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            except (OSError, ValueError) as err:
                raise BsrError(f"{url}: transfer broken off after {bar.n} bytes ({err}); rerun to resume") from None
    got = part.stat().st_size
    if total is not None and got != total:
        raise BsrError(f"{url}: truncated transfer, got {got} of {total} bytes; rerun to resume")
    part.replace(dest)


def fetch_source(source: str, cache_dir: Path) -> Path:
    """The local file or folder for a source: https:// into the cache, file:// and package:// in place."""
    url = urlparse(source)
    if url.scheme in ("http", "https"):
        dest = cache_dir / (PurePosixPath(unquote(url.path)).name or "download")
        with file_lock(cache_dir / f".{dest.name}.lock"):
            if not dest.exists():
                http_fetch(source, dest)
        return dest
    if url.scheme == "file":
        path = Path(unquote(url.netloc + url.path))
    elif url.scheme == "package":
        spec = importlib.util.find_spec(url.netloc)
        if spec is None or spec.origin is None:
            raise BsrError(f"{source}: Python package {url.netloc!r} is not installed")
        path = Path(spec.origin).parent / url.path.lstrip("/")
    elif url.scheme == "":
        path = Path(source)
    else:
        raise BsrError(f"{source}: unsupported source scheme {url.scheme!r} (https, http, file or package)")
    if not path.exists():
        raise BsrError(f"{source}: {path} does not exist")
    return path


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


def extract_archive(archive: Path, subdir: str, dest: Path) -> None:
    """Extract the regular files directly inside `subdir` into `dest`, after checking every member."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = [(i.filename, (i.external_attr >> 16) & 0o170000 == 0o120000, False, i.is_dir(), i)
                       for i in z.infolist()]
            check_members(archive, members)
            for name, _, _, is_dir, info in members:
                if not is_dir and in_subdir(name, subdir):
                    with z.open(info) as src, open(dest / PurePosixPath(name).name, "wb") as out:
                        shutil.copyfileobj(src, out)
        return
    try:
        with tarfile.open(archive) as t:
            members = [(m.name, m.issym() or m.islnk(), not (m.isfile() or m.isdir() or m.issym() or m.islnk()),
                        m.isdir(), m) for m in t.getmembers()]
            check_members(archive, members)
            for name, _, _, is_dir, member in members:
                if not is_dir and in_subdir(name, subdir):
                    with t.extractfile(member) as src, open(dest / PurePosixPath(name).name, "wb") as out:
                        shutil.copyfileobj(src, out)
    except tarfile.TarError as err:
        raise BsrError(f"{archive}: not a readable zip or tar archive ({err})") from None


def check_members(archive: Path, members) -> None:
    for name, is_link, is_special, _, _ in members:
        problem = unsafe_member(name, is_link, is_special)
        if problem:
            raise BsrError(f"{archive}: refused to extract entry {name!r}: {problem}")


def check_sha256(name: str, source: str, actual: str, expected: str | None, lock_path: Path) -> None:
    """Against the config's sha256, else the lock file's record, which the first download writes."""
    if expected:
        if actual != expected:
            raise BsrError(f"{source}: sha256 {actual} does not match datasets.{name}.sha256 {expected}")
        return
    with file_lock(lock_path.with_name(lock_path.name + ".flock")):
        lock = json.loads(lock_path.read_text()) if lock_path.exists() else {}
        recorded = lock.get(name)
        if recorded and recorded["source"] == source:
            if recorded["sha256"] != actual:
                raise BsrError(f"{source}: sha256 {actual} differs from {recorded['sha256']} recorded in "
                               f"{lock_path} for {name}; delete that entry if the change is intended")
            return
        lock[name] = {"source": source, "sha256": actual}
        with atomic_path(lock_path) as tmp:
            tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")


def download_dataset(name: str, spec: dict, out_dir, lock_path, cache_dir) -> int:
    """Fetch, verify and unpack one dataset into `out_dir`; return its image count."""
    source = spec["source"]
    local = fetch_source(source, Path(cache_dir))
    files = spec.get("files")
    if local.is_dir():
        if files:
            missing = [f for f in files if not (local / f).is_file()]
            if missing:
                raise BsrError(f"{source}: missing {', '.join(missing)}")
        digest = sha256_folder(local, files)
    else:
        digest = sha256_file(local)
    try:
        check_sha256(name, source, digest, spec.get("sha256"), Path(lock_path))
    except BsrError:
        if local.is_relative_to(Path(cache_dir)):
            local.unlink()  # a corrupt download must not be reused
        raise
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        if local.is_dir():
            folder = local / spec.get("subdir", "")
            for f in files or sorted(p.name for p in folder.iterdir() if p.is_file()):
                shutil.copyfile(folder / f, tmp / Path(f).name)
        else:
            extract_archive(local, spec.get("subdir", ""), tmp)
        images = sorted(p for p in tmp.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for extra in set(tmp.iterdir()) - set(images):
            extra.unlink()
        if len(images) != spec["images"]:
            raise BsrError(f"{source}: found {len(images)} images under {spec.get('subdir') or '/'!r}, "
                           f"datasets.{name}.images expects {spec['images']}")
        for image in images:
            read_image(image)  # every image must be readable as the pipeline will read it
    return len(images)
