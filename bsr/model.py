"""The BSR network: a shallow conv, a chain of FMGs, weighted concatenation of every FMG output, fusion,
and a pixel-shuffle reconstruction.

Choices the paper leaves open (config keys in brackets, defaults are the paper config's):
- an FMG is 5 residual blocks (conv-ReLU-conv, times `res_scale`, plus identity) and no conv of its own, so
  that 16 FMGs give 164 conv layers (the notes estimate about 165). The group's skip is the identity path
  through its blocks, so an FMG returns x + the sum of its five residual branches: x is carried once. Adding x
  again around the group (`x + blocks(x)`) doubles x at every FMG: 2^16 at the paper's depth, an output std of
  about 600 at init and a network that does not learn;
- each residual branch's last conv starts at PyTorch's default init divided by sqrt(number of residual blocks)
  (Fixup's rule for two-layer branches), so the features keep their scale at init whatever the depth: with
  PyTorch's default init alone, the last of 32 FMGs would have 75x the shallow features' std;
- the per-FMG weights are sigmoid(w), so always in (0, 1), initialised at 0.5;
- fusion is one 3x3 conv from the concatenation back to `channels`, plus the shallow features (a global
  residual, as in EDSR/RCAN);
- ×2 and ×3 upsample with one conv + pixel shuffle, ×4 with two ×2 stages;
- inputs are RGB in [0, 1] with DIV2K's mean subtracted (EDSR's MeanShift) and added back.
`skip_connections: false` (the "w/o SC" arm) feeds only the last FMG's output to the fusion conv.

`arch: edsr` builds EDSR-baseline (Lim et al. 2017) from the same parts, as the same-budget baseline: a
shallow conv, `n_blocks` residual blocks (16) and a conv, a global residual, the same upsampler and output conv;
no FMGs and no weighted concatenation (`n_fmg` and `skip_connections` do not apply to it). Its residual
branches get the same depth-scaled init, so that the two networks differ in architecture only.
"""
from __future__ import annotations

import torch
from torch import nn

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
BLOCKS_PER_FMG = 5


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(inplace=True), conv3x3(channels, channels))
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.body(x) * self.res_scale


class FMG(nn.Module):
    """Feature Mapping Group: residual blocks whose identity paths are the skip around the group."""

    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualBlock(channels, res_scale) for _ in range(BLOCKS_PER_FMG)))

    def forward(self, x):
        return self.blocks(x)


def upsampler(scale: int, channels: int) -> nn.Sequential:
    if scale not in (2, 3, 4):
        raise ValueError(f"BSR reconstructs x2, x3 or x4, not x{scale}")
    layers = []
    for s in [2, 2] if scale == 4 else [scale]:
        layers += [conv3x3(channels, channels * s * s), nn.PixelShuffle(s)]
    return nn.Sequential(*layers)


class BSR(nn.Module):
    def __init__(self, scale: int, n_fmg: int = 16, channels: int = 64, res_scale: float = 1.0,
                 skip_connections: bool = True):
        super().__init__()
        self.skip_connections = skip_connections
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.shallow = conv3x3(3, channels)
        self.fmgs = nn.ModuleList(FMG(channels, res_scale) for _ in range(n_fmg))
        fused_inputs = n_fmg + 1 if skip_connections else 1
        # One logit per concatenated feature map (the shallow features and each FMG's output).
        self.fmg_logits = nn.Parameter(torch.zeros(fused_inputs)) if skip_connections else None
        self.fuse = conv3x3(channels * fused_inputs, channels)
        self.upsample = upsampler(scale, channels)
        self.to_rgb = conv3x3(channels, 3)
        scale_residual_branches(self, n_fmg * BLOCKS_PER_FMG)

    def fmg_weights(self) -> torch.Tensor:
        """The per-FMG concatenation weights, each in (0, 1)."""
        return torch.sigmoid(self.fmg_logits)

    def forward(self, x):
        shallow = self.shallow(x - self.rgb_mean)
        features, outputs = shallow, [shallow]
        for fmg in self.fmgs:
            features = fmg(features)
            outputs.append(features)
        if self.skip_connections:
            weights = self.fmg_weights().to(shallow.dtype)
            fused = self.fuse(torch.cat([w * f for w, f in zip(weights, outputs)], dim=1))
        else:
            fused = self.fuse(features)
        upsampled = self.upsample(fused + shallow)
        # The last conv runs in float32 even under bf16 autocast: bf16's 8-bit mantissa would quantise the
        # output more coarsely than the uint8 images it is scored against.
        with torch.autocast(upsampled.device.type, enabled=False):
            return self.to_rgb(upsampled.float()) + self.rgb_mean


@torch.no_grad()
def scale_residual_branches(model: nn.Module, blocks: int) -> None:
    """Divide the last conv of every residual branch by sqrt(blocks): the sum of the branches then has a
    bounded variance at init (each adds about 1/(18·blocks) of its input's, with PyTorch's default init)."""
    for block in model.modules():
        if isinstance(block, ResidualBlock):
            last = block.body[-1]
            last.weight.mul_(blocks ** -0.5)
            last.bias.mul_(blocks ** -0.5)


class EDSR(nn.Module):
    def __init__(self, scale: int, n_blocks: int = 16, channels: int = 64, res_scale: float = 1.0):
        super().__init__()
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.shallow = conv3x3(3, channels)
        self.body = nn.Sequential(*(ResidualBlock(channels, res_scale) for _ in range(n_blocks)),
                                  conv3x3(channels, channels))
        self.upsample = upsampler(scale, channels)
        self.to_rgb = conv3x3(channels, 3)
        scale_residual_branches(self, n_blocks)

    def forward(self, x):
        shallow = self.shallow(x - self.rgb_mean)
        upsampled = self.upsample(self.body(shallow) + shallow)
        with torch.autocast(upsampled.device.type, enabled=False):  # as in BSR: an fp32 output conv
            return self.to_rgb(upsampled.float()) + self.rgb_mean


def build_model(model_cfg: dict, scale: int) -> nn.Module:
    if model_cfg.get("arch", "bsr") == "edsr":
        return EDSR(scale, n_blocks=model_cfg["n_blocks"], channels=model_cfg["channels"],
                    res_scale=model_cfg["res_scale"])
    return BSR(scale, n_fmg=model_cfg["n_fmg"], channels=model_cfg["channels"],
               res_scale=model_cfg["res_scale"], skip_connections=model_cfg["skip_connections"])


def model_info(model: nn.Module) -> dict:
    return {"conv_layers": sum(isinstance(m, nn.Conv2d) for m in model.modules()),
            "params": sum(p.numel() for p in model.parameters())}
