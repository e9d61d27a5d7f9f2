#!/usr/bin/env python3
"""The EAGLE head trainer (tools/train_eagle) end to end on stories260K, CPU only.

Usage: test_train_eagle.py SPECQ_BINARY SHARED_DIR
Checks: the PyTorch conversion of the llama2.c checkpoint decodes the same greedy ids as specq;
self-distillation data from specq; a short training run lowers the held-out loss; the written head
loads in specq (`--spec eagle --eagle OUT`) and its greedy ids equal `--spec none`.
Exit 77 (ctest SKIP_RETURN_CODE) when torch, transformers or safetensors is not installed.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

missing = [m for m in ("torch", "transformers", "safetensors") if importlib.util.find_spec(m) is None]
if missing:
    print(f"SKIP: Python packages {missing} are not installed (pip install torch transformers safetensors)")
    sys.exit(77)

BINARY, SHARED = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINER = os.path.join(ROOT, "tools", "train_eagle", "train_eagle.py")
MODEL = os.path.join(SHARED, "models", "stories260K")
passed = failed = 0


def check(cond, message):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok: {message}")
    else:
        failed += 1
        print(f"FAILED: {message}")


def trainer(*args):
    return subprocess.run([sys.executable, TRAINER, *args], check=True, capture_output=True, text=True,
                          timeout=240).stdout


def generate(prompt, *extra):
    out = subprocess.run([BINARY, "generate", "--model", MODEL, "--prompt", prompt, "--max-new-tokens", "48",
                          "--json", "--threads", "1", *extra], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    with tempfile.TemporaryDirectory(prefix="specq_train_eagle_") as tmp:
        base = json.loads(trainer("check-base", "--specq", BINARY, "--model", MODEL, "--prompt-ids", "1,403,407",
                                  "--new-tokens", "40", "--threads", "1"))
        check(base["equal"] and len(base["specq"]) > 10, "PyTorch stories260K greedy ids equal specq's")

        prompts, data, head = (os.path.join(tmp, n) for n in ("prompts.jsonl", "data.jsonl", "head"))
        trainer("prompts", "stories", "--split", "train", "--count", "12", "--out", prompts)
        trainer("data", "--specq", BINARY, "--model", MODEL, "--prompts", prompts, "--out", data,
                "--max-new-tokens", "64", "--add-special", "--threads", "1")
        rows = [json.loads(line) for line in open(data)]
        check(len(rows) == 12 and all(r["prompt_ids"][0] == 1 and r["answer_ids"] for r in rows),
              "self-distillation data: 12 prompts with BOS and their answers")

        result = json.loads(trainer("train", "--model", MODEL, "--data", data, "--out", head, "--max-steps", "60",
                                    "--batch-size", "2", "--lr", "3e-3", "--val-fraction", "0.25", "--threads",
                                    "1"))
        before, after = result["before"]["loss"], result["after"]["loss"]
        check(after < 0.9 * before, f"held-out loss decreases ({before:.3f} -> {after:.3f})")
        check(all(os.path.exists(os.path.join(head, f)) for f in ("model.safetensors", "config.json",
                                                                  "training.json")),
              "the head directory has model.safetensors, config.json and training.json")

        prompt = "Once there was a red ball called Kim who liked the park."
        plain = generate(prompt)
        spec = generate(prompt, "--spec", "eagle", "--eagle", head)
        check(spec["token_ids"] == plain["token_ids"], "specq with the trained head: greedy ids equal --spec none")
        check(spec["mean_accepted_length"] >= 1.0, f"tau reported ({spec['mean_accepted_length']:.2f})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
