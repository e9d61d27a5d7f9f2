#!/usr/bin/env python3
"""Writes a seed corpus for tokenizer_json_fuzz into OUTDIR: the normalizer fixture's small byte-level BPE once per
normalizer it is tested with (NFC, NFKC, ..., a Sequence), read at run time, so mutations start from files that
load. Each seed is JSON without a newline, so the fuzzer gives it no tokenizer_config.json.
Usage: tokenizer_json_fuzz_seeds.py OUTDIR"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    golden = json.loads((ROOT / "tests/fixtures/tokenizer/normalizer_goldens.json").read_text(encoding="utf-8"))
    for name, normalizer in golden["normalizers"].items():
        spec = dict(golden["tokenizer"], normalizer=normalizer)
        (out / f"normalizer-{name}.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
