#!/usr/bin/env python3
"""Writes the seed corpus fuzz/seeds/<target>/ (committed; standard library only).

Valid seeds let the fuzzer start past the headers: each target's readers accept every seed.
Rerun after changing a format or the safetensors target's model: python3 fuzz/make_seeds.py
"""
import gzip
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    folder = os.path.join(HERE, "seeds", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def idx(sizes, payload):
    return bytes([0, 0, 8, len(sizes)]) + b"".join(struct.pack(">I", s) for s in sizes) + payload


# idx: the first byte picks the encoding (odd: the target gzips the rest; even: as it is).
images = idx([2, 3, 2], bytes(range(12)))
labels = idx([3], bytes([0, 9, 4]))
for name, data in [("images", images), ("labels", labels)]:
    write("idx", f"{name}-raw", b"\x00" + data)
    write("idx", f"{name}-via-gzip", b"\x01" + data)
    write("idx", f"{name}-gzip-file", b"\x00" + gzip.compress(data, mtime=0))

# cifar10: one and two records (label byte, then 3,072 pixel bytes).
record = lambda label: bytes([label]) + bytes((i * 7 + label) % 256 for i in range(3072))
write("cifar10", "one-record", record(3))
write("cifar10", "two-records", record(0) + record(9))


def safetensors(tensors, dtype="F32"):
    fmt, size = {"F32": ("<f", 4), "F64": ("<d", 8)}[dtype]
    header, data = {}, b""
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        values = b"".join(struct.pack(fmt, 0.25 * (i + 1)) for i in range(n))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(values)]}
        data += values
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


# safetensors: the target's model (fuzz_targets/safetensors.rs) in both layouts.
native = [
    ("block.conv.weight", [2, 1, 1, 1]),
    ("block.conv.gain", [2]),
    ("block.conv.bias", [2]),
    ("block.skipinit_gain.gain", [1]),
    ("head.weight", [3, 2]),
    ("head.bias", [2]),
]
timm = [
    ("block.conv.weight", [2, 1, 1, 1]),
    ("block.conv.gain", [2, 1, 1, 1]),
    ("block.conv.bias", [2]),
    ("block.skipinit_gain", []),
    ("head.weight", [2, 3]),
    ("head.bias", [2]),
]
write("safetensors", "native-f32", safetensors(native))
write("safetensors", "timm-f32", safetensors(timm))
write("safetensors", "timm-f64", safetensors(timm, "F64"))
