#!/usr/bin/env python3
"""Writes a seed corpus for safetensors_fuzz into OUTDIR, made from the test fixtures at run time.

Each fixture .safetensors keeps its real header (names, dtypes, metadata) but every dimension is
cut to at most 2, so a seed is a small valid file; a few hand-made edge cases join them.
Usage: safetensors_fuzz_seeds.py OUTDIR
"""
import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "I32": 4, "I64": 8}


def pack(header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def shrink(raw):
    (n,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out_header, out_data = {}, b""
    for name, entry in sorted(header.items()):
        if name == "__metadata__":
            out_header[name] = entry
            continue
        shape = [min(d, 2) for d in entry["shape"]]
        count = 1
        for d in shape:
            count *= d
        nbytes = count * SIZES[entry["dtype"]]
        begin = entry["data_offsets"][0]
        out_header[name] = {"dtype": entry["dtype"], "shape": shape,
                            "data_offsets": [len(out_data), len(out_data) + nbytes]}
        out_data += data[begin:begin + nbytes]
    return pack(out_header, out_data)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "tests/fixtures/hf").glob("*/*.safetensors")):
        (out / f"{path.parent.name}-{path.stem}").write_bytes(shrink(path.read_bytes()))
    edge_cases = {
        "empty-header": pack({}, b""),
        "metadata-only": pack({"__metadata__": {"format": "pt"}}, b""),
        "scalar-and-empty": pack({"s": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
                                  "e": {"dtype": "U8", "shape": [0], "data_offsets": [8, 8]}}, bytes(8)),
        "all-dtypes": pack({d: {"dtype": d, "shape": [1], "data_offsets": [8 * i, 8 * i + s]}
                            for i, (d, s) in enumerate(SIZES.items())}, bytes(8 * len(SIZES))),
    }
    for name, raw in edge_cases.items():
        (out / name).write_bytes(raw)


if __name__ == "__main__":
    main()
