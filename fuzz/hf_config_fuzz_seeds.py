#!/usr/bin/env python3
"""Writes a seed corpus for hf_config_fuzz into OUTDIR: the fixtures' config.json and
generation_config.json files, read at run time. Usage: hf_config_fuzz_seeds.py OUTDIR"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "tests/fixtures/hf").glob("*/*config.json")):
        (out / f"{path.parent.name}-{path.name}").write_bytes(path.read_bytes())


if __name__ == "__main__":
    main()
