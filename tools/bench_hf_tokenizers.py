#!/usr/bin/env python3
"""Hugging Face `tokenizers` encode throughput, single-threaded, on the texts bench/tokenizer_bench.cpp uses.

One plain `encode(text, add_special_tokens=False)` call per text (no encode_batch), RAYON_NUM_THREADS=1.
Prints MB/s (10^6 bytes of UTF-8 input per second) per tokenizer, from the best of several passes over all
texts, both by wall-clock time and by this process's CPU time (on a shared machine CPU time is the fairer one;
Google Benchmark's "CPU" column is the matching figure for specq).
Usage: python3 tools/bench_hf_tokenizers.py [--passes N]
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared")
SOURCES = [
    ("data/mt_bench/question.jsonl", ["turns"]),
    ("data/spec_bench/question.jsonl", ["turns"]),
    ("data/gsm8k/test.jsonl", ["question", "answer"]),
    ("data/humaneval/HumanEval.jsonl.gz", ["prompt", "canonical_solution"]),
]


def shared_texts():
    texts = []
    for rel, fields in SOURCES:
        opener = gzip.open if rel.endswith(".gz") else open
        with opener(os.path.join(SHARED, rel), "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                for field in fields:
                    value = record[field]
                    texts.extend(value if isinstance(value, list) else [value])
    return texts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    texts = shared_texts()
    total_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"tokenizers {tokenizers.__version__}; {len(texts)} texts, {total_bytes} bytes")
    for name in ("llama3", "llama2"):
        tok = Tokenizer.from_file(os.path.join(SHARED, "tokenizers", name, "tokenizer.json"))
        for text in texts[:50]:  # warm up
            tok.encode(text, add_special_tokens=False)
        best_wall = best_cpu = float("inf")
        tokens = 0
        for _ in range(args.passes):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            tokens = 0
            for text in texts:
                tokens += len(tok.encode(text, add_special_tokens=False).ids)
            best_wall = min(best_wall, time.perf_counter() - start_wall)
            best_cpu = min(best_cpu, time.process_time() - start_cpu)
        print(f"{name}: wall {total_bytes / best_wall / 1e6:.2f} MB/s ({best_wall * 1e3:.1f} ms per pass), "
              f"cpu {total_bytes / best_cpu / 1e6:.2f} MB/s ({best_cpu * 1e3:.1f} ms per pass), {tokens} tokens")


if __name__ == "__main__":
    main()
