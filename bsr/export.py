"""`bsr export`: a trained model as one ONNX file, for runtimes without PyTorch (ONNX Runtime, TensorRT, OpenVINO).

The graph's input `lr` is float32 RGB NCHW in [0, 1] of any batch size, height and width; its output `sr` is RGB
at the model's scale (clip it to [0, 1] before going to 8 bits). PyTorch's exporter (torch.export underneath)
needs the `onnx` and `onnxscript` packages, which the `export` extra installs.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from bsr import BsrError
from bsr.files import atomic_path
from bsr.upscale import load_model

ONNX_PACKAGES = ("onnx", "onnxscript")


def export_onnx(model_source: str, out) -> int:
    """Write the model of a run folder, a model.pt or an MLflow model URI (looked up as `bsr upscale` does) to
    `out` as ONNX, atomically; return its scale."""
    import torch
    from torch.export import Dim

    out = Path(out)
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise BsrError(f"{out}: ONNX export needs the {' and '.join(missing)} package(s): "
                       f"install bsr's export extra (pip install -e '.[export]' in the checkout)")
    # PyTorch's exporter lists the torchvision operators it skips when torchvision is absent; BSR uses none.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    # Sizes unlike each other and unlike 1, which torch.export would tie together or fix.
    example = torch.zeros(2, 3, 16, 24)
    free_sizes = ({0: Dim("batch"), 2: Dim("height"), 3: Dim("width")},)
    with atomic_path(out, inputs=[model_source]) as tmp:
        model, scale = load_model(model_source, torch.device("cpu"))
        # external_data=False: one self-contained file (ONNX keeps weights inline up to 2 GB; the paper's BSR has about 27 MB).
        torch.onnx.export(model, (example,), tmp, input_names=["lr"], output_names=["sr"],
                          dynamic_shapes=free_sizes, dynamo=True, external_data=False, verbose=False)
    return scale
