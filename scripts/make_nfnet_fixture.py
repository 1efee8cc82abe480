#!/usr/bin/env python3
"""Writes the NFNet forward-parity fixture checked by tests/tests/nfnet_parity.rs.

A tiny NFNet with every component of timm's dm_nfnet_f* models (deep-quad stem, grouped 3x3
convolutions with the extra conv, squeeze-excite, SkipInit gains, avg-pool downsampling,
TF-SAME padding, gamma-scaled GELU, final 1x1 conv) is built with timm, given random weights
(gains and SkipInit gains moved away from their identity inits so every branch matters), and
run on random inputs in eval mode. Outputs, in tests/data/:

  nfnet_tiny_timm.safetensors  the state dict, timm's key layout
  nfnet_tiny_io.safetensors    `input` [2, 3, 32, 32] and `logits` [2, 10]

Configuration (must equal dp_models::NfNetConfig::tiny()): depths (1, 1, 2, 1), channels
(32, 64, 96, 128), stem 16 channels, group size 16, 256 final features, 10 classes, 32x32.

Run (timm 1.0.31, torch 2.15.0, safetensors; e.g. in ../shared/peers' venv plus `pip install
timm safetensors`):  .venv-peers/bin/python scripts/make_nfnet_fixture.py
"""
import os

import torch
from safetensors.torch import save_file
from timm.models.nfnet import NormFreeNet, _dm_nfnet_cfg
from dataclasses import replace

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


def main():
    torch.manual_seed(20261127)
    cfg = _dm_nfnet_cfg(depths=(1, 1, 2, 1), channels=(32, 64, 96, 128))
    cfg = replace(cfg, stem_chs=16, group_size=16, num_features=256)
    model = NormFreeNet(cfg, num_classes=10).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("skipinit_gain"):
                p.copy_(0.5 + 0.2 * torch.randn_like(p))
            elif name.endswith(".gain"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            elif name.startswith("head.fc"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p))
        x = torch.randn(2, 3, 32, 32)
        logits = model(x)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(OUT, "nfnet_tiny_timm.safetensors"))
    save_file({"input": x.contiguous(), "logits": logits.contiguous()}, os.path.join(OUT, "nfnet_tiny_io.safetensors"))
    print("parameters", sum(p.numel() for p in model.parameters()), "logits", logits)


if __name__ == "__main__":
    main()
