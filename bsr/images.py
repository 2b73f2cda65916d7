"""Reading and writing 8-bit images exactly as stored, and atomic file output.

Rules:
- PNG and BMP, 8 bits per sample. Grayscale files stay single-channel (H, W); colour files are (H, W, 3).
- RGBA / LA: the alpha channel is dropped when every pixel is opaque; a transparent image is refused,
  because no SR benchmark has transparency and compositing it would invent pixel values.
- Palette images are refused where an image is scored or trained on: quantised colours are lossy (a palette copy
  of Set5 x2 scores 0.17 dB lower); as a photo to upscale they are expanded to RGB.
- 16-bit, float, 1-bit and CMYK images are refused rather than silently converted.
- A file is read by its content, and must hold what its name says: JPEG or GIF bytes named `.png` are refused
  (a lossy or palette-quantised copy is not a benchmark image), and so is a header that claims more pixels
  than PIL's decompression-bomb limit.
- JPEG only where a photo is the input (`bsr upscale`), never where an image is scored: a lossy image is no
  benchmark's. Its EXIF orientation is applied, as a photo viewer shows it.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bsr import BsrError
from bsr.files import atomic_path

IMAGE_SUFFIXES = (".png", ".bmp")
PHOTO_SUFFIXES = (*IMAGE_SUFFIXES, ".jpg", ".jpeg")  # what `bsr upscale` reads
FORMATS = {".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG"}


def read_image(path: str | os.PathLike, photo: bool = False,
               check_header: Callable[[tuple[int, int]], None] | None = None) -> np.ndarray:
    """Return the image at `path` as uint8, (H, W) for gray or (H, W, 3) for colour; `photo`: JPEG and palette
    images too. `check_header` sees the header's (H, W) before any pixel is decoded, so that an image of the
    wrong size is refused without decoding it (a small file may claim 10000×10000 pixels)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            expected = FORMATS.get(path.suffix.lower())
            if expected == "JPEG" and not photo:
                raise BsrError(f"{path}: JPEG is lossy, so it is read only as an input to upscale, never scored "
                               "or trained on (PNG or BMP expected)")
            if expected and im.format != expected:
                raise BsrError(f"{path}: holds {im.format} data, not {expected}; convert it losslessly or "
                               f"name it for what it is")
            if check_header:
                check_header(im.size[::-1])
            im.load()
            if im.format == "JPEG":
                im = ImageOps.exif_transpose(im)
            return _to_uint8_array(im, path, photo)
    except BsrError:
        raise
    except Image.DecompressionBombError as err:
        raise BsrError(f"{path}: refused, its header claims too many pixels ({err})") from None
    except UnidentifiedImageError:
        raise BsrError(f"{path}: not an image file (PNG or BMP expected)") from None
    except FileNotFoundError:
        raise BsrError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BsrError(f"{path}: corrupt or truncated image ({err})") from None


def _to_uint8_array(im: Image.Image, path: Path, photo: bool) -> np.ndarray:
    mode = im.mode
    if mode == "P" and not photo:
        raise BsrError(f"{path}: a palette image (mode P), whose quantised colours are lossy, so it is read only as an "
                       "input to upscale, never scored or trained on (8-bit gray or RGB expected)")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("L", "RGB"):
        return np.array(im)  # a writable copy: torch refuses read-only arrays
    if mode in ("LA", "RGBA"):
        arr = np.array(im)
        if (arr[..., -1] != 255).any():
            raise BsrError(f"{path}: has transparent pixels (mode {mode}); only opaque images are supported")
        return np.ascontiguousarray(arr[..., 0] if mode == "LA" else arr[..., :3])
    if mode.startswith("I;16") or mode in ("I", "F"):
        raise BsrError(f"{path}: {mode} image is not 8-bit; only 8-bit images are supported")
    raise BsrError(f"{path}: unsupported image mode {mode} (8-bit L, RGB or opaque RGBA expected)")


def as_rgb(img: np.ndarray) -> np.ndarray:
    """Networks see RGB: a gray image becomes R = G = B (EDSR's convention)."""
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def list_images(directory: str | os.PathLike, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    """The PNG/BMP files (or those of other `suffixes`) of `directory`, sorted by name; an error if none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BsrError(f"{directory}: not a directory")
    named = [p for p in directory.iterdir() if p.suffix.lower() in suffixes]
    for path in named:
        if not path.is_file() and not path.is_dir():  # a folder named x.png is no image, and none of ours
            raise BsrError(f"{path}: {not_a_file(path)}; an image file expected")
    files = sorted(p for p in named if p.is_file())
    if not files:
        raise BsrError(f"{directory}: no {' or '.join(s[1:].upper() for s in suffixes)} images found")
    return files


def not_a_file(path: Path) -> str:
    """What a name that is neither a file nor a folder is: a broken link, or a device, pipe or socket."""
    if not path.is_symlink():
        return "not a regular file but a device, pipe or socket"
    target = os.readlink(path)
    return f"a symbolic link to a missing file ({target})" if not path.exists() else \
        f"not a regular file but a device, pipe or socket (a link to {target})"


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, atomically."""
    if img.dtype != np.uint8:
        raise TypeError(f"write_image expects uint8, got {img.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG", compress_level=1)
