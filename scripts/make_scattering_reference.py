#!/usr/bin/env python3
"""Writes tests/data/scattering_reference.json, checked by tests/tests/models.rs: Kymatio's 2-D
scattering transform (the one Tramer & Boneh 2021 used) of a few images, as the independent
reference of dp_models::scattering.

Images (pixels stored in the file as bytes, scaled to [0, 1] before the transform):
  - fmnist_test_0: the first Fashion-MNIST test image (Debian's dataset-fashion-mnist),
  - noise_28: 28x28 uniform random bytes (numpy seed 20261202),
  - rgb_32: 3x32x32 random bytes with a smooth bright disc (seed 20261202), transformed per
    channel as Tramer & Boneh do for CIFAR-10 (3 x 81 channels).
Outputs: Scattering2D(J=2, L=8, max_order=2) on float64 input, shape [C*81, H/4, W/4].

Run (Python 3.11):
  python3 -m venv /tmp/kym && /tmp/kym/bin/pip install kymatio==0.3.0 "numpy<2" "scipy<1.15"
  /tmp/kym/bin/python scripts/make_scattering_reference.py
(newer scipy dropped sph_harm, which kymatio 0.3.0 imports).
"""
import gzip
import json
import os

import numpy as np
import kymatio
import scipy
from kymatio.numpy import Scattering2D

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "scattering_reference.json")
FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def fmnist_first():
    with gzip.open(FMNIST, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw[16:16 + 784], dtype=np.uint8).reshape(1, 28, 28)


def main():
    rng = np.random.default_rng(20261202)
    noise = rng.integers(0, 256, size=(1, 28, 28), dtype=np.uint8)
    rgb = rng.integers(0, 128, size=(3, 32, 32)).astype(np.float64)
    yy, xx = np.mgrid[0:32, 0:32]
    rgb += 127.0 * ((yy - 14) ** 2 + (xx - 18) ** 2 < 81)
    rgb = rgb.astype(np.uint8)

    images = {"fmnist_test_0": fmnist_first(), "noise_28": noise, "rgb_32": rgb}
    records = []
    for name, pixels in images.items():
        c, h, w = pixels.shape
        scattering = Scattering2D(J=2, shape=(h, w), L=8, max_order=2)
        x = pixels.astype(np.float64) / 255.0
        s = scattering(x)  # [c, 81, h/4, w/4]
        s = s.reshape(c * s.shape[1], s.shape[2], s.shape[3])
        records.append({
            "name": name,
            "shape": [c, h, w],
            "pixels": pixels.reshape(-1).tolist(),
            "output_shape": list(s.shape),
            "output": [float("%.10g" % v) for v in s.reshape(-1)],
        })
    data = {
        "generator": "scripts/make_scattering_reference.py",
        "versions": {"kymatio": kymatio.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__},
        "transform": {"J": 2, "L": 8, "max_order": 2},
        "tolerance_abs": 1e-4,
        "images": records,
    }
    with open(OUT, "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
