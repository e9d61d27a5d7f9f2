#!/usr/bin/env python3
"""Greedy ids and tokenizer ids of a GGUF model according to Hugging Face transformers.

transformers loads the GGUF itself (dequantized to fp32, llama q/k un-permuted by its own code), so
the ids are an independent reference for specq's GGUF loader, tokenizer and CPU forward.
tests/gguf_smollm2_test.cpp compares specq against the JSON this writes.

Usage: make_gguf_reference.py MODEL.gguf OUT.json [--questions ../shared/data/mt_bench/question.jsonl]
Needs torch (CPU is enough), transformers and gguf.
"""
import argparse
import hashlib
import json
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW_TOKENS = 40
# MT-Bench first turns used as chat prompts (question_id), plus plain-text prompts.
QUESTION_IDS = [81, 101, 131]
PLAIN_PROMPTS = ["The capital of France is", "def fibonacci(n):\n"]
# Texts for the tokenizer comparison: spaces, digits, code, non-Latin scripts, special tokens.
TOKENIZER_TEXTS = [
    "Hello world! It's 2024; prices rose 12.5% (from $1,234 to $1,388.25).",
    "  leading spaces and\ttabs\n\nnew lines   ",
    "def f(x):\n    return x ** 2  # square\n",
    "Grüße aus Köln, naïve café — 東京タワー 😀 Привет",
    "<|im_start|>user\nWhat is 7 * 8?<|im_end|>\n<|im_start|>assistant\n",
    "don't won't I'll we've they're she'd 1234567890",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def greedy(model, prompt_ids, n):
    """n greedy tokens, one forward per token on the KV cache, never stopping early (EOS included)."""
    ids = torch.tensor([prompt_ids])
    out = []
    with torch.no_grad():
        result = model(ids, use_cache=True)
        for _ in range(n):
            next_id = int(result.logits[0, -1].argmax())
            out.append(next_id)
            result = model(torch.tensor([[next_id]]), past_key_values=result.past_key_values, use_cache=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--questions", type=Path, default=Path("../shared/data/mt_bench/question.jsonl"))
    args = parser.parse_args()
    torch.manual_seed(0)
    directory, name = str(args.gguf.parent), args.gguf.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32)
    model.eval()

    questions = {}
    with open(args.questions) as f:
        for line in f:
            q = json.loads(line)
            questions[q["question_id"]] = q["turns"][0]

    cases = []
    for qid in QUESTION_IDS:
        messages = [{"role": "user", "content": questions[qid]}]
        prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "input_ids"):  # transformers 5 returns an encoding
            prompt_ids = prompt_ids["input_ids"]
        ids = greedy(model, prompt_ids, NEW_TOKENS)
        cases.append({"chat": questions[qid], "question_id": qid, "prompt_ids": prompt_ids, "greedy_ids": ids,
                      "text": tokenizer.decode(ids)})
        print(f"[{qid}] {tokenizer.decode(ids)!r}", flush=True)
    for text in PLAIN_PROMPTS:
        prompt_ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        ids = greedy(model, prompt_ids, NEW_TOKENS)
        cases.append({"text_prompt": text, "prompt_ids": prompt_ids, "greedy_ids": ids, "text": tokenizer.decode(ids)})
        print(f"[{text!r}] {tokenizer.decode(ids)!r}", flush=True)

    tokenized = [{"text": t, "ids": tokenizer(t, add_special_tokens=False)["input_ids"]} for t in TOKENIZER_TEXTS]
    out = {
        "model": name,
        "sha256": sha256(args.gguf),
        "made_by": f"tools/make_gguf_reference.py, transformers {transformers.__version__}, torch {torch.__version__}, "
                   "fp32 on CPU",
        "new_tokens": NEW_TOKENS,
        "cases": cases,
        "tokenizer": tokenized,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
