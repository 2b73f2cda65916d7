"""Model files are data only: a model folder is model.safetensors + model.json, built into a network by bsr's
own code; nothing else in the folder is read, so a torch.export program, a pickle or an MLmodel pointing
elsewhere runs no code. Models of older bsr versions (model.pt, MLflow pytorch flavour) are refused with how
to re-log them."""
from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bsr import BsrError
from bsr.cli import main
from bsr.model import build_model
from bsr.model_files import MODEL_RECORD, MODEL_WEIGHTS, write_model_folder
from bsr.upscale import load_model

CPU = torch.device("cpu")
TINY = {"n_fmg": 1, "channels": 8, "res_scale": 1.0, "skip_connections": True}


class Payload(torch.nn.Module):
    """A module whose unpickling runs a shell command."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def forward(self, x):
        return x

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def tiny_folder(folder: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    network = build_model(TINY, 2).eval()
    write_model_folder(folder, network.state_dict(),
                       {"model_config": TINY, "scale": 2, "degradation": "BI", "name": "BI_x2"})
    return network


def pytorch_flavour_model(folder: Path, marker: Path) -> None:
    """What an older bsr logged (a torch.export program under MLflow's pytorch flavour), next to a pickle that
    runs code, with its MLmodel pointing its model data outside the folder."""
    import mlflow.pytorch

    mlflow.pytorch.save_model(build_model(TINY, 2).eval(), folder, serialization_format="pt2",
                              input_example=np.zeros((2, 3, 16, 24), np.float32), pip_requirements=["torch"])
    torch.save(Payload(str(marker)), folder / "data" / "model.pth")
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["pytorch"]["model_data"] = "../elsewhere"
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_torch_export_mlflow_model_is_refused_with_how_to_relog_it_and_runs_no_code(tmp_path, as_uri):
    marker = tmp_path / "pwned"
    pytorch_flavour_model(tmp_path / "old", marker)
    source = (tmp_path / "old").as_uri() if as_uri else str(tmp_path / "old")
    with pytest.raises(BsrError, match=r"older bsr, which bsr no longer loads .*rerun `bsr train --config CONFIG "
                                       r"--out RUN --resume auto`"):
        load_model(source, CPU)
    assert not marker.exists()


def test_a_model_pt_is_refused_with_how_to_relog_it(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "run").mkdir()
    torch.save(Payload(str(marker)), tmp_path / "run" / "model.pt")
    for source in (tmp_path / "run", tmp_path / "run" / "model.pt"):
        with pytest.raises(BsrError, match="a model.pt of an older bsr, which bsr no longer loads"):
            load_model(str(source), CPU)
    assert not marker.exists()


def test_files_a_model_folder_does_not_name_run_no_code_and_do_not_matter(tmp_path, capsys):
    """A bsr model folder with a torch.export program, a pickle and an MLmodel of the pytorch flavour beside its
    two files loads as the two files alone, through upscale and export, and nothing of the rest runs."""
    marker = tmp_path / "pwned"
    network = tiny_folder(tmp_path / "model")
    pytorch_flavour_model(tmp_path / "crafted", marker)
    for path in (tmp_path / "crafted").rglob("*"):
        if path.is_file():
            target = tmp_path / "model" / path.relative_to(tmp_path / "crafted")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    torch.save(Payload(str(marker)), tmp_path / "model" / "model.pt")
    torch.save(Payload(str(marker)), tmp_path / "model" / "checkpoint.pt")
    loaded, scale = load_model(str(tmp_path / "model"), CPU)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert scale == 2 and torch.equal(loaded(x), network(x))
    lr = tmp_path / "lr.png"
    from bsr.images import write_image

    write_image(lr, (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8))
    for uri in (str(tmp_path / "model"), (tmp_path / "model").as_uri()):
        assert main(["upscale", "--model", uri, "--in", str(lr), "--out", str(tmp_path / "sr")]) == 0
    assert (tmp_path / "sr" / "lr.png").is_file()
    assert not marker.exists()


def test_a_record_or_weights_outside_the_folder_or_not_matching_is_refused(tmp_path):
    tiny_folder(tmp_path / "elsewhere")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / MODEL_RECORD).symlink_to(tmp_path / "elsewhere" / MODEL_RECORD)
    (tmp_path / "model" / MODEL_WEIGHTS).symlink_to(tmp_path / "elsewhere" / MODEL_WEIGHTS)
    with pytest.raises(BsrError, match="model.json resolves to .*outside the model folder; refused"):
        load_model(str(tmp_path / "model"), CPU)
    tiny_folder(tmp_path / "other")
    (tmp_path / "other" / MODEL_WEIGHTS).write_bytes((tmp_path / "other" / MODEL_WEIGHTS).read_bytes()[:-4] + b"\0" * 4)
    with pytest.raises(BsrError, match="model.safetensors is not the weights that model.json records"):
        load_model(str(tmp_path / "other"), CPU)
