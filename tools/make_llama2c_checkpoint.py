#!/usr/bin/env python3
"""Writes a llama2.c "version 0" checkpoint of a given shape with seeded random weights, plus a
tokenizer.bin of matching vocabulary size (placeholder pieces), so llama2.c's run.c and specq can
be timed side by side on identical weights. Used only for measurements (docs/PERF.md)."""
import argparse
import array
import math
import os
import random
import struct


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--dim", type=int, default=288)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--kv-heads", type=int, default=6)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    head = a.dim // a.heads
    kv = a.kv_heads * head

    def uniform(n, scale, offset=0.0):
        return array.array("f", (offset + scale * (2.0 * rng.random() - 1.0) for _ in range(n)))

    lin = lambda rows, cols: uniform(rows * cols, math.sqrt(3.0 / cols))
    L = a.layers
    with open(os.path.join(a.out, "model.bin"), "wb") as f:
        f.write(struct.pack("7i", a.dim, a.hidden, L, a.heads, a.kv_heads, a.vocab, a.seq_len))
        parts = [uniform(a.vocab * a.dim, 1.0), uniform(L * a.dim, 0.1, 1.0), lin(L * a.dim, a.dim),
                 lin(L * kv, a.dim), lin(L * kv, a.dim), lin(L * a.dim, a.dim), uniform(L * a.dim, 0.1, 1.0),
                 lin(L * a.hidden, a.dim), lin(L * a.dim, a.hidden), lin(L * a.hidden, a.dim),
                 uniform(a.dim, 0.1, 1.0)]
        freqs = [1.0 / 10000.0 ** (2 * i / head) for i in range(head // 2)]
        real = array.array("f", (math.cos(p * fr) for p in range(a.seq_len) for fr in freqs))
        imag = array.array("f", (math.sin(p * fr) for p in range(a.seq_len) for fr in freqs))
        for part in parts + [real, imag]:
            part.tofile(f)
    with open(os.path.join(a.out, "tokenizer.bin"), "wb") as f:
        f.write(struct.pack("i", 8))
        for i in range(a.vocab):
            piece = f"<{i}>".encode()
            f.write(struct.pack("fi", 0.0, len(piece)))
            f.write(piece)


if __name__ == "__main__":
    main()
