"""Super-resolving images of any size with a trained model: tiled inference, the ×8 self-ensemble, and loading
a model from a model folder (a run folder: bsr.model_files) or an MLflow model that `bsr train` logged.

Tiling is written here rather than taken from basicsr or Real-ESRGAN (whose tilers pad, run and crop the same
way): they would bring their whole packages for a few dozen lines, and they round their own way. Each tile is a
window of at most `tile`×`tile` LR pixels; of its output only the core, at least `overlap` LR pixels from every
window edge that is not an image edge, is kept. Once `overlap` covers the network's receptive radius, every
kept pixel saw exactly the context it sees untiled, so the stitched image equals untiled inference but for
float rounding, at the memory of one tile. That radius (`receptive_radius`) is 164 LR pixels for the paper's
BSR; trained SR networks depend far less on distant pixels than that bound, which is why the default overlap
is smaller (see DEFAULT_OVERLAP).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from bsr import BsrError, layout
from bsr.degrade import to_uint8
from bsr.config import DEFAULT_TRACKING_URI
from bsr.files import URI_SCHEME, check_output, mark_folder
from bsr.images import PHOTO_SUFFIXES, as_rgb, list_images, read_image, write_image

# LR tile side when none is given: a 256×256 tile of the paper model holds about 0.9 GiB of activations.
DEFAULT_TILE = {"cpu": 256, "cuda": 512}
# LR pixels of context dropped around every tile core. On a BSR of the paper's depth (16 FMGs of 16 channels,
# receptive radius 164) trained for 300 iterations, a BSD100 image tiled with overlap 0, 4, 8 and 12 differed
# from the untiled SR by up to 91, 4, 1 and 1 levels on 29%, 5%, 0.2% and 0.007% of its values; from 14 on,
# by 1 level on 3 or 4 values (float sums in another order). 32 leaves a wide margin for longer training.
DEFAULT_OVERLAP = 32


def check_tiling(tile: int, overlap: int) -> None:
    if tile < 0 or overlap < 0:
        raise BsrError(f"--tile {tile} --overlap {overlap}: both must be >= 0 (--tile 0: no tiling)")
    if tile and tile <= 2 * overlap:
        raise BsrError(f"--tile {tile} must be more than twice --overlap {overlap}: each tile keeps its central "
                       f"tile - 2·overlap pixels")


def receptive_radius(model_cfg: dict) -> int:
    """How far, in LR pixels, an output pixel of a bsr model sees: 1 per 3×3 conv, so 2 per residual block
    (5 per FMG in BSR), plus the shallow conv, BSR's fusion conv or EDSR's conv after the blocks, the
    upsampling conv and the output conv (at HR size, it reaches 1 LR pixel further)."""
    from bsr.model import BLOCKS_PER_FMG

    blocks = model_cfg["n_blocks"] if model_cfg.get("arch") == "edsr" else BLOCKS_PER_FMG * model_cfg["n_fmg"]
    return 2 * blocks + 4


def tile_windows(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Along one axis of `size` LR pixels: (window start, window stop, core start, core stop) of every tile.

    Cores follow each other in steps of tile - 2·overlap. Each window is `tile` long and is slid back inside
    the image at its ends, where the image edge bounds the context anyway; the window that reaches the last
    pixel keeps the rest of the axis as its core.
    """
    if size <= tile:
        return [(0, size, 0, size)]
    tiles, core = [], 0
    while core < size:
        start = min(max(core - overlap, 0), size - tile)
        stop = size if start + tile == size else core + tile - 2 * overlap
        tiles.append((start, start + tile, core, stop))
        core = stop
    return tiles


def dihedral(x, k: int, flip: bool, inverse: bool = False):
    """One of the 8 flips/rotations of an (N, C, H, W) tensor, or its inverse."""
    import torch

    if inverse:
        x = torch.rot90(x, -k, dims=(2, 3))
        return torch.flip(x, dims=(3,)) if flip else x
    return torch.rot90(torch.flip(x, dims=(3,)) if flip else x, k, dims=(2, 3))


def exact_forward(model) -> Callable:
    """(1, 3, h, w) float32 in [0, 1] -> the model's output as float64, in full fp32 (no autocast, no TF32:
    the numbers are scored, and must not depend on the GPU)."""
    import torch

    def forward(x):
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.no_grad():
                return model(x).double()
        finally:
            torch.backends.cudnn.allow_tf32 = tf32

    return forward


def self_ensemble(forward: Callable) -> Callable:
    """EDSR's "+": the mean, in float64, of the outputs for the 8 flips/rotations of the input, each mapped back."""
    def ensemble(x):
        total = 0
        for k in range(4):
            for flip in (False, True):
                total = total + dihedral(forward(dihedral(x, k, flip)), k, flip, inverse=True)
        return total / 8

    return ensemble


def output_scale(lr_shape: tuple[int, int], sr_shape: tuple[int, int]) -> int:
    scale = sr_shape[0] // lr_shape[0]
    if scale < 1 or tuple(sr_shape) != (lr_shape[0] * scale, lr_shape[1] * scale):
        raise BsrError(f"the model turned a {lr_shape[0]}×{lr_shape[1]} input into {sr_shape[0]}×{sr_shape[1]}: "
                       f"not an integer upscaling")
    return scale


def upscale_tiled(lr: np.ndarray, forward: Callable, device, tile: int, overlap: int,
                  progress: bool = False) -> np.ndarray:
    """uint8 LR (gray or RGB) -> uint8 SR, by `forward` on tiles (one window when the image has no more
    pixels than a tile, or `tile` is 0). A gray image goes in as R = G = B and comes out as the mean of the
    output channels; rounding is per pixel, so it does not matter that it happens tile by tile."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(as_rgb(lr))).permute(2, 0, 1)[None]  # views may be flipped
    h, w = lr.shape[:2]
    whole = tile == 0 or h * w <= tile * tile
    rows = [(0, h, 0, h)] if whole else tile_windows(h, tile, overlap)
    cols = [(0, w, 0, w)] if whole else tile_windows(w, tile, overlap)
    sr = None
    with tqdm(total=len(rows) * len(cols), unit="tile", leave=False, disable=not progress or whole) as bar:
        for y0, y1, top, bottom in rows:
            for x0, x1, left, right in cols:
                y = forward(x[..., y0:y1, x0:x1].to(device).float().div(255))[0].permute(1, 2, 0)
                s = output_scale((y1 - y0, x1 - x0), y.shape[:2])
                y = y[(top - y0) * s:(bottom - y0) * s, (left - x0) * s:(right - x0) * s].cpu().numpy()
                if lr.ndim == 2:
                    y = y.mean(axis=2)
                if sr is None:
                    sr = np.empty((h * s, w * s) + y.shape[2:], np.uint8)
                sr[top * s:bottom * s, left * s:right * s] = to_uint8(y * 255)
                bar.update()
    return sr


def model_upscaler(model, device, tile: int = 0, overlap: int = DEFAULT_OVERLAP, ensemble: bool = False,
                   progress: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 LR -> uint8 SR through `model` in full fp32; untiled unless `tile` is given, with the ×8
    self-ensemble if `ensemble`."""
    check_tiling(tile, overlap)
    forward = exact_forward(model)
    if ensemble:
        forward = self_ensemble(forward)
    return lambda lr: upscale_tiled(lr, forward, device, tile, overlap, progress)


def inference_device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        raise BsrError("--device cuda: no CUDA device is available here")
    return torch.device(name)


def load_model_folder(folder, device, name: str | None = None):
    """A model folder (bsr.model_files) built into bsr's network, in eval mode, with its record."""
    from bsr.model import build_model
    from bsr.model_files import read_model_folder

    weights, record = read_model_folder(folder, name)
    model = build_model(record["model_config"], record["scale"])
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise BsrError(f"{name or folder}: its weights do not fit the model its config describes "
                       f"({str(err).splitlines()[0]})") from None
    return model.to(device).eval(), record


def model_store(uri: str) -> str | None:
    """The tracking store that a `runs:/` or `models:/` URI is looked up in: $MLFLOW_TRACKING_URI, else ./mlflow.db
    (MLflow's default, and the pipeline's), which must exist: MLflow would create an empty one and then say only
    that the model is not there. None for a URI that names its own location (file://, s3://, ...)."""
    from bsr.tracking import resolve_uri

    if not uri.startswith(("runs:/", "models:/")):
        return None
    store = resolve_uri(None, DEFAULT_TRACKING_URI)
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///"):]).is_file():
        raise BsrError(f"{uri}: no MLflow store to look it up in: $MLFLOW_TRACKING_URI is unset (or names no "
                       f"database) and {store[len('sqlite:///'):]} does not exist; set MLFLOW_TRACKING_URI to the "
                       f"store the pipeline logged to")
    return store


def load_mlflow_model(uri: str, device):
    """(model, record) of an MLflow model that `bsr train` logged: its MLmodel must have the `bsr` flavour, and
    then its model.json and model.safetensors alone are downloaded and loaded as a model folder; MLflow's own
    loaders never run, and no path that the MLmodel names is followed. `runs:/` and `models:/` URIs are looked
    up in $MLFLOW_TRACKING_URI, else in ./mlflow.db."""
    import tempfile

    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from bsr.model_files import FLAVOR, MODEL_RECORD, MODEL_WEIGHTS, RELOG
    from bsr.tracking import connect, process_wide_store

    store = model_store(uri)
    where = f" from {store}" if store else ""
    with tempfile.TemporaryDirectory(prefix="bsr-model-") as tmp, \
            (process_wide_store(store) if store else contextlib.nullcontext()):
        if store:
            connect(store)

        def download(name: str) -> Path:
            try:
                return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/{name}",
                                                                dst_path=tmp))
            except (MlflowException, OSError) as err:
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise BsrError(f"{uri}: cannot load this MLflow model{where} ({reason})") from None

        try:
            flavors = yaml.safe_load(download("MLmodel").read_text()).get("flavors") or {}
        except (UnicodeDecodeError, yaml.YAMLError, AttributeError):
            raise BsrError(f"{uri}: not an MLflow model (no readable MLmodel file)") from None
        if FLAVOR not in flavors:
            raise BsrError(f"{uri}: an MLflow model of flavour {', '.join(flavors) or 'none'}, not one that bsr "
                           f"logged (flavour {FLAVOR}); bsr no longer loads torch.export or pickled models (they "
                           f"can run code); if an older bsr logged it, {RELOG}")
        record, weights = download(MODEL_RECORD), download(MODEL_WEIGHTS)
        if record.parent != weights.parent:
            raise BsrError(f"{uri}: its {MODEL_RECORD} and {MODEL_WEIGHTS} are not in one folder")
        return load_model_folder(record.parent, device, uri)


def load_model(source: str, device):
    """(model, scale) from a model folder (a run folder), a file:// URI of one, or an MLflow model URI."""
    from bsr.files import local_path
    from bsr.model_files import RELOG

    path = local_path(source)
    if path is not None and path.is_file():
        if path.name == "model.pt":
            raise BsrError(f"{source}: a model.pt of an older bsr, which bsr no longer loads (its format can run "
                           f"code); to get a model folder, {RELOG}")
        path = path.parent if path.name in (layout.RUN_MODEL, layout.RUN_MODEL_RECORD) else path
        if path.is_file():
            raise BsrError(f"{source}: not a model folder; --model expects a run folder written by `bsr train` "
                           f"(or another folder holding {layout.RUN_MODEL} and {layout.RUN_MODEL_RECORD}) or an "
                           f"MLflow model URI")
    if path is not None and path.is_dir():
        model, record = load_model_folder(path, device, source)
    elif URI_SCHEME.match(source):
        model, record = load_mlflow_model(source, device)
    else:
        raise BsrError(f"{source}: no such run folder or model folder, nor an MLflow model URI "
                       f"(runs:/RUN_ID/model, models:/NAME@ALIAS)")
    return model, record["scale"]


def input_images(source) -> list[Path]:
    """The images of --in: one PNG, BMP or JPEG file, or every one of a folder, with distinct stems."""
    path = Path(source)
    if path.is_dir():
        files = list_images(path, PHOTO_SUFFIXES)
    elif path.is_file():
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            raise BsrError(f"{path}: --in expects a PNG, BMP or JPEG image, or a folder of them")
        files = [path]
    else:
        raise BsrError(f"{path}: no such file or folder (--in expects a PNG, BMP or JPEG image, or a folder of "
                       "them)")
    stems = [p.stem for p in files]
    clash = next((p for p in files if stems.count(p.stem) > 1), None)
    if clash:
        raise BsrError(f"{path}: two images share the stem {clash.stem!r}, and both would be {clash.stem}.png")
    return files


def upscale_files(model_source: str, source, out_dir, tile: int | None = None, overlap: int | None = None,
                  ensemble: bool = False, device: str = "auto") -> list[Path]:
    """Super-resolve --in into PNGs of the same stems in `out_dir`; return their paths.

    `tile` and `overlap` default to the device's DEFAULT_TILE and DEFAULT_OVERLAP. Each PNG is written
    atomically as soon as it is done, so an interrupted run keeps the finished ones. `out_dir` is created if
    need be; like every folder bsr writes it holds OUTPUT_MARKER, and one that bsr did not write (or that is,
    or holds, --in) is refused before any work.
    """
    files = input_images(source)
    out_dir = Path(out_dir)
    check_output(out_dir, inputs=[source, model_source], folder=True, writer="upscale")
    torch_device = inference_device(device)
    tile = DEFAULT_TILE[torch_device.type] if tile is None else tile
    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    check_tiling(tile, overlap)  # before the model loads, which may take a while from MLflow
    model, scale = load_model(model_source, torch_device)
    upscale = model_upscaler(model, torch_device, tile, overlap, ensemble, progress=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_folder(out_dir, "upscale")
    written = []
    for path in tqdm(files, unit="image", desc=f"x{scale}", disable=len(files) == 1):
        written.append(out_dir / f"{path.stem}.png")
        write_image(written[-1], upscale(read_image(path, photo=True)))
    return written
