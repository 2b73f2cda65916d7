"""Model folders: a trained network as data only, so that loading a model runs no code from it.

`model.safetensors` holds the weights (safetensors carries tensors and nothing else) and `model.json` bsr's
record of the network: the experiment's model config, scale, degradation, experiment name and the weights
file's sha256. bsr builds the network from the record with its own code (bsr.model) and checks the record as
the experiment schema checks a config. Those two names are all that is read: any other file in the folder
(an MLmodel, a torch.export program, a pickle) is never opened, and a name that resolves outside the folder
(a symbolic link) is refused. An MLflow model logged by `bsr train` is exactly these two files under MLflow's
MLmodel, flavour `bsr`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bsr import BsrError
from bsr.files import atomic_path

MODEL_WEIGHTS = "model.safetensors"
MODEL_RECORD = "model.json"
MODEL_FORMAT = "bsr-model 1"
# The MLflow flavour of a model folder logged by `bsr train`.
FLAVOR = "bsr"
RECORD_KEYS = ("model_config", "scale", "degradation", "name")
# How to get a model folder where an older bsr left a torch file or a torch.export MLflow model.
RELOG = ("rerun `bsr train --config CONFIG --out RUN --resume auto` on its run folder: it rewrites the model "
         "from the run's final checkpoint as model.safetensors and model.json, and logs and registers it again")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_model_folder(folder, weights: dict, record: dict) -> None:
    """`weights` (a state dict) and `record` (RECORD_KEYS) into `folder`, each file atomically; the weights
    first, so that a record never names weights that are not there."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    with atomic_path(folder / MODEL_WEIGHTS) as tmp:
        save_file({name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in weights.items()},
                  str(tmp))
        sha = file_sha256(tmp)
    with atomic_path(folder / MODEL_RECORD) as tmp:
        tmp.write_text(json.dumps({"format": MODEL_FORMAT, **{key: record[key] for key in RECORD_KEYS},
                                   "weights_sha256": sha}, indent=2) + "\n")


def check_record(record: dict, name: str) -> None:
    """What a model records, checked as the experiment schema checks a config, before a network is built from
    it: an unknown arch would otherwise build BSR, and a huge n_fmg allocate until memory runs out."""
    from bsr.config import package_schema, validate

    if record["scale"] not in (2, 3, 4) or isinstance(record["scale"], bool):
        raise BsrError(f"{name}: scale is {record['scale']!r}, expected 2, 3 or 4")
    if not isinstance(record["model_config"], dict):
        raise BsrError(f"{name}: model_config is a {type(record['model_config']).__name__}, expected a mapping")
    validate(dict(record["model_config"]), package_schema("experiment")["properties"]["model"], f"{name}: model_config")


def legacy_model(folder: Path) -> str | None:
    """What an older bsr left in `folder` instead of a model folder, if anything (never opened: only named)."""
    if (folder / "model.pt").is_file():
        return "a model.pt"
    if (folder / "MLmodel").is_file():
        return "an MLflow model without the bsr flavour (a torch.export or pickled program)"
    return None


def model_file(folder: Path, file_name: str, name: str) -> Path:
    path = folder / file_name
    if not path.is_file():
        legacy = legacy_model(folder)
        if legacy:
            raise BsrError(f"{name}: holds {legacy} of an older bsr, which bsr no longer loads (its format can run "
                           f"code); to get a model folder, {RELOG}")
        raise BsrError(f"{name}: no {file_name}; a model folder (a run folder written by `bsr train`, or an MLflow "
                       f"model it logged) holds {MODEL_WEIGHTS} and {MODEL_RECORD}")
    if folder.resolve() not in path.resolve().parents:
        raise BsrError(f"{name}: {file_name} resolves to {path.resolve()}, outside the model folder; refused")
    return path


def read_model_folder(folder, name: str | None = None) -> tuple[dict, dict]:
    """(weights, record) of a model folder, checked: the record's format and keys, its sha256 of the weights
    file, and that the weights are tensors. `name` is what errors call the model (default: the folder)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    name = name or str(folder)
    record_path, weights_path = model_file(folder, MODEL_RECORD, name), model_file(folder, MODEL_WEIGHTS, name)
    try:
        record = json.loads(record_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BsrError(f"{name}: {MODEL_RECORD} is not JSON ({err})") from None
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise BsrError(f"{name}: {MODEL_RECORD} is not a bsr model record (format {MODEL_FORMAT!r} expected)")
    missing = [key for key in (*RECORD_KEYS, "weights_sha256") if key not in record]
    if missing:
        raise BsrError(f"{name}: {MODEL_RECORD} lacks {', '.join(missing)}")
    check_record(record, name)
    if file_sha256(weights_path) != record["weights_sha256"]:
        raise BsrError(f"{name}: {MODEL_WEIGHTS} is not the weights that {MODEL_RECORD} records (sha256 differs)")
    try:
        weights = load_file(str(weights_path), device="cpu")
    except Exception as err:  # safetensors raises its own error, or OSError, for a file it cannot parse
        raise BsrError(f"{name}: {MODEL_WEIGHTS} is not a readable safetensors file "
                       f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})") from None
    return weights, record
