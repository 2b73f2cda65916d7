"""The hybrid objective f = L2 + alpha·L1 + beta·Lp, on RGB in [0, 1].

Lp = mean((d² + eps²)^(p/2)) with p < 1: it grows fastest near zero, so it keeps pushing on the small
residuals that L1 and L2 barely see; eps keeps its gradient finite at d = 0 (the paper gives neither p nor
eps: p = 0.5 and eps = 1e-3 are assumptions). Each term's weight is a config value; a zero weight skips the
term, so the ablation arms "L2" and "L2 + L1" are configs.
"""
from __future__ import annotations

import torch

from bsr import BsrError


def check_loss_config(cfg: dict) -> None:
    if not 0 < cfg["p"] < 1:
        raise BsrError(f"loss.p must be in (0, 1), got {cfg['p']}")
    if min(cfg["l2"], cfg["l1"], cfg["lp"]) < 0 or cfg["l2"] + cfg["l1"] + cfg["lp"] == 0:
        raise BsrError("loss weights l2, l1, lp must be non-negative and not all zero")


def hybrid_loss(sr: torch.Tensor, hr: torch.Tensor, cfg: dict) -> torch.Tensor:
    d = sr.float() - hr.float()
    loss = d.new_zeros(())
    if cfg["l2"]:
        loss = loss + cfg["l2"] * d.square().mean()
    if cfg["l1"]:
        loss = loss + cfg["l1"] * d.abs().mean()
    if cfg["lp"]:
        loss = loss + cfg["lp"] * (d.square() + cfg["eps"] ** 2).pow(cfg["p"] / 2).mean()
    return loss
