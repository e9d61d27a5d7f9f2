#!/usr/bin/env python3
"""Writes a seed corpus for torch_checkpoint_fuzz into OUTDIR: the torch.save fixtures of the tests
(EAGLE heads as state dicts, the refused pickle, FR-Spec token maps as bare tensors), read at run time.
Usage: torch_checkpoint_fuzz_seeds.py OUTDIR
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    fixtures = sorted((ROOT / "tests" / "fixtures").rglob("*.bin")) + sorted((ROOT / "tests" / "fixtures").rglob("*.pt"))
    for i, path in enumerate(fixtures):
        data = path.read_bytes()
        if data[:2] == b"PK":
            (out / f"seed{i}").write_bytes(data)


if __name__ == "__main__":
    main()
