#!/usr/bin/env python3
"""Opacus 1.6 on the GPU check's models: the median time of a non-private step, of a private
step with Opacus's per-example hooks, and of one with its ghost clipping, interleaved, with the
peak device memory of each. One JSON object per line on stdout, progress on stderr.

    python3 scripts/opacus_gpu_step.py --model fmnist-cnn --batch 1024
    python3 scripts/opacus_gpu_step.py --model wrn16-4 --batch 256

The models are written here from their descriptions (Tramèr & Boneh 2021's CNN; WRN-16-4
with GroupNorm of 16 groups, De et al. 2022); WRN's convolutions are plain (Opacus has no
per-example rule for weight-standardized ones), which makes Opacus's step slightly cheaper
than ours. Synthetic data, fixed batches (no Poisson sampling), σ = 1, C = 1, plain SGD.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 8, stride=2, padding=3), nn.Tanh(), nn.MaxPool2d(2, 1),
        nn.Conv2d(16, 32, 4, stride=2), nn.Tanh(), nn.MaxPool2d(2, 1),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 32), nn.Tanh(), nn.Linear(32, 10))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.n1 = nn.GroupNorm(16, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.n2 = nn.GroupNorm(16, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.GroupNorm(16, cin), nn.Conv2d(cin, cout, 1, stride=stride))

    def forward(self, x):
        h = self.c1(torch.relu(self.n1(x)))
        h = self.c2(torch.relu(self.n2(h)))
        return h + (x if self.short is None else self.short(x))


def wrn(depth=16, k=4, classes=10):
    n = (depth - 4) // 6
    layers, c = [nn.Conv2d(3, 16, 3, padding=1)], 16
    for stage in range(3):
        w = (16 * k) << stage
        for i in range(n):
            layers.append(Block(c, w, 2 if (stage > 0 and i == 0) else 1))
            c = w
    layers += [nn.GroupNorm(16, c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["fmnist-cnn", "wrn16-4"], required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    from opacus import PrivacyEngine

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = (1, 28, 28) if args.model == "fmnist-cnn" else (3, 32, 32)
    make = cnn if args.model == "fmnist-cnn" else wrn
    torch.manual_seed(0)
    x = torch.randn(args.batch, *shape, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    data = torch.utils.data.TensorDataset(x, y)

    def loader():
        return torch.utils.data.DataLoader(data, batch_size=args.batch)

    runs = {}
    plain = make().to(dev)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    def nonprivate():
        plain_opt.zero_grad()
        loss_fn(plain(x), y).backward()
        plain_opt.step()

    runs["nonprivate"] = nonprivate
    for mode in ["hooks", "ghost"]:
        model = make().to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        engine = PrivacyEngine(accountant="rdp")
        kwargs = dict(module=model, optimizer=opt, data_loader=loader(), noise_multiplier=1.0,
                      max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=mode)
        if mode == "ghost":
            model, opt, crit, _ = engine.make_private(criterion=nn.CrossEntropyLoss(), **kwargs)
        else:
            model, opt, _ = engine.make_private(**kwargs)
            crit = nn.CrossEntropyLoss()

        def step(model=model, opt=opt, crit=crit):
            opt.zero_grad()
            crit(model(x), y).backward()
            opt.step()

        runs[mode] = step
    times = {k: [] for k in runs}
    peak = {k: 0 for k in runs}
    for i in range(args.warmup + args.iters):
        for name, step in runs.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
                peak[name] = max(peak[name], torch.cuda.max_memory_allocated() // 2**20)
            if i >= args.warmup:
                times[name].append((time.perf_counter() - t) * 1e3)
        print(f"  opacus {args.model} batch {args.batch}: iteration {i + 1}/{args.warmup + args.iters}",
              file=sys.stderr, flush=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    for name in ["nonprivate", "hooks", "ghost"]:
        print(json.dumps({"peer": "opacus-1.6", "model": args.model, "batch": args.batch,
                          "device": str(dev), "mode": name, "step_ms": round(med[name], 3),
                          "ratio_to_nonprivate": round(med[name] / med["nonprivate"], 3),
                          "peak_device_mib": peak[name]}), flush=True)


if __name__ == "__main__":
    main()
