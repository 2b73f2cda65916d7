import subprocess
import sys

import pytest
import torch

from bsr import BsrError
from bsr.config import load_yaml, resolve_experiment
from bsr.losses import check_loss_config, hybrid_loss
from bsr.model import BSR, build_model, model_info
from tests.conftest import REPO


@pytest.mark.parametrize("experiment,n_fmg", [("BI_x2", 16), ("BI_x3", 16), ("BI_x4", 16), ("BI_x2", 32)])
def test_paper_depth_stays_bounded_at_init(experiment, n_fmg):
    """The paper's 16 FMGs (and 32): the last FMG keeps the shallow features' scale; the output is image-sized."""
    cfg = resolve_experiment(load_yaml(REPO / "config" / "config.yaml"), experiment)
    torch.manual_seed(0)
    model = build_model({**cfg["model"], "n_fmg": n_fmg}, cfg["scale"])
    stds = {}
    model.shallow.register_forward_hook(lambda m, i, out: stds.__setitem__("shallow", out.std().item()))
    model.fmgs[-1].register_forward_hook(lambda m, i, out: stds.__setitem__("last_fmg", out.std().item()))
    with torch.no_grad():
        out = model(torch.rand(2, 3, 48, 48))
    print(f"{experiment} n_fmg={n_fmg}: shallow std {stds['shallow']:.3f}, last FMG {stds['last_fmg']:.3f}, "
          f"output {out.std().item():.3f}")
    assert out.std() < 1
    assert stds["shallow"] / 10 < stds["last_fmg"] < 10 * stds["shallow"]


def test_paper_config_has_fewer_than_200_conv_layers():
    for scale in (2, 3, 4):
        out = subprocess.run([sys.executable, "-m", "bsr.cli", "model-info", "--config",
                              str(REPO / "config" / "config.yaml"), "--scale", str(scale)],
                             capture_output=True, text=True, check=True).stdout
        conv, params = (int(part.split("=")[1]) for part in out.split())
        assert conv < 200 and 6_000_000 < params < 7_500_000


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_is_scaled_input(scale):
    model = BSR(scale, n_fmg=2, channels=8)
    assert model(torch.rand(2, 3, 9, 11)).shape == (2, 3, 9 * scale, 11 * scale)


def test_fmg_weights_stay_in_unit_interval_and_sc_off_uses_last_fmg_only():
    model = BSR(2, n_fmg=3, channels=8)
    with torch.no_grad():
        model.fmg_logits.copy_(torch.tensor([-10.0, 0.0, 3.0, 10.0]))
    w = model.fmg_weights()
    assert ((w > 0) & (w < 1)).all() and len(w) == 4
    no_sc = BSR(2, n_fmg=3, channels=8, skip_connections=False)
    assert no_sc.fmg_logits is None and no_sc.fuse.in_channels == 8
    assert model.fuse.in_channels == 8 * 4
    assert model_info(no_sc)["conv_layers"] == model_info(model)["conv_layers"]


def test_loss_terms_and_ablation_arms_are_configs():
    sr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    d = sr - hr
    base = {"l2": 0.0, "l1": 0.0, "lp": 0.0, "p": 0.5, "eps": 1e-3}
    assert torch.isclose(hybrid_loss(sr, hr, {**base, "l2": 1.0}), (d**2).mean())
    assert torch.isclose(hybrid_loss(sr, hr, {**base, "l2": 1.0, "l1": 2.0}), (d**2).mean() + 2 * d.abs().mean())
    lp = ((d**2 + 1e-6) ** 0.25).mean()
    assert torch.isclose(hybrid_loss(sr, hr, {**base, "lp": 0.5}), 0.5 * lp)
    cfg = load_yaml(REPO / "config" / "config.yaml")
    assert resolve_experiment(cfg, "ablation_l2")["loss"] | {"l2": 1.0} == {**base, "l2": 1.0, "eps": 0.001}
    assert resolve_experiment(cfg, "ablation_l2_l1")["loss"]["lp"] == 0.0
    assert resolve_experiment(cfg, "ablation_wo_rfs")["sampling"]["rfs"] is False
    assert resolve_experiment(cfg, "ablation_wo_sc")["model"]["skip_connections"] is False
    with pytest.raises(BsrError, match="loss.p"):
        check_loss_config({**base, "p": 1.5, "l2": 1.0})


def test_edsr_baseline_matches_the_published_size_and_needs_its_depth():
    """EDSR-baseline (16 blocks, 64 channels): 1.37M parameters at x2 as published, 1.52M at x4."""
    from bsr.config import check_experiment

    cfg = resolve_experiment(load_yaml(REPO / "config" / "config.yaml"), "BI_x2")
    edsr = {**cfg["model"], "arch": "edsr", "n_blocks": 16}
    params = {scale: model_info(build_model(edsr, scale))["params"] for scale in (2, 4)}
    assert 1.36e6 < params[2] < 1.38e6 and 1.51e6 < params[4] < 1.53e6, params
    with torch.no_grad():
        assert build_model(edsr, 2)(torch.rand(1, 3, 12, 12)).shape == (1, 3, 24, 24)
    without_depth = {**cfg, "model": {**cfg["model"], "arch": "edsr"}}
    with pytest.raises(BsrError, match="n_blocks"):
        check_experiment(without_depth, "edsr experiment")
