#!/usr/bin/env python3
"""Makes the tiny Hugging Face checkpoints under tests/fixtures/hf/ and their reference outputs.

Each fixture is a seeded random LlamaForCausalLM / Qwen2ForCausalLM saved with save_pretrained,
plus what transformers computes for a fixed prompt with the model upcast to fp32:
  reference_logits.bin  float32 little-endian, [prompt positions][vocab], row-major
  reference.json        prompt ids, 16 greedy ids, shapes, library versions, top-1 margins

Fixtures:
  llama3_gqa_f32     Llama-3 style: GQA, llama3 rope scaling, head_dim != hidden/heads, fp32 (5.x config)
  llama_tied_bf16    tied embeddings, bf16 (5.x config)
  llama_mqa_f16      one KV head, linear rope scaling, fp16 (config rewritten into the 4.x form)
  qwen2_bias_sharded Qwen2 with q/k/v bias, fp32, saved in shards (config rewritten into the 4.x form)

transformers 5.x writes "rope_parameters" and "dtype"; the 4.x form ("rope_theta" + "rope_scaling",
"torch_dtype") is made by rewriting config.json, and the script checks that transformers reloads the
rewritten directory to the same logits.

Usage: python tools/make_hf_fixtures.py [--out tests/fixtures/hf]
Needs: torch, transformers, safetensors (CPU is enough).
"""
import argparse
import json
import math
import shutil
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

PROMPT = [1, 17, 200, 45, 3, 99, 128, 7, 255, 64, 31, 150]
GREEDY_TOKENS = 16
# Greedy ids are only a fair check when the winner is clear of the runner-up by far more than the
# numerical difference between two fp32 implementations (~1e-5 here).
MIN_MARGIN = 1e-2
# A continuation that repeats one token would not exercise the KV cache much.
MIN_DISTINCT = 6


def fixtures():
    common = dict(vocab_size=256, num_hidden_layers=2, bos_token_id=1, eos_token_id=2, max_position_embeddings=512)
    return [
        dict(
            name="llama3_gqa_f32",
            cls=LlamaForCausalLM,
            config=LlamaConfig(
                hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                rope_theta=500000.0, rms_norm_eps=1e-5,
                rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                  original_max_position_embeddings=64),
                **common),
            dtype=torch.float32, form="5.x", generation_eos=[2, 5]),
        dict(
            name="llama_tied_bf16",
            cls=LlamaForCausalLM,
            config=LlamaConfig(
                hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=4,
                tie_word_embeddings=True, rope_theta=10000.0, **common),
            # Tied logits favour repeating the last token; stronger layers keep the continuation varied.
            dtype=torch.bfloat16, form="5.x", generation_eos=None, residual_gain=4.0),
        dict(
            name="llama_mqa_f16",
            cls=LlamaForCausalLM,
            config=LlamaConfig(
                hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=1,
                rope_theta=10000.0, rope_scaling=dict(rope_type="linear", factor=2.0), **common),
            dtype=torch.float16, form="4.x", generation_eos=None),
        dict(
            name="qwen2_bias_sharded",
            cls=Qwen2ForCausalLM,
            config=Qwen2Config(
                hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                rope_theta=1000000.0, tie_word_embeddings=False, **common),
            dtype=torch.float32, form="4.x", generation_eos=[2, 3], shard_size="40KB"),
    ]


def randomize(model, seed, residual_gain):
    """Weights of O(1) effect per layer, so that logits are spread and greedy choices are clear.
    residual_gain scales what each layer adds to the residual stream (o_proj, down_proj)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name == "lm_head.weight":  # wide logits: clear greedy winners
                p.copy_(4.0 * torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:  # nn.Linear [out, in]
                gain = residual_gain if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def to_4x_form(config):
    """Rewrites a transformers 5.x config dict into the form transformers 4.x wrote."""
    params = config.pop("rope_parameters")
    config["rope_theta"] = params.pop("rope_theta")
    rope_type = params.pop("rope_type")
    # Old 4.x files used "type"; later ones "rope_type". Both are in the wild.
    config["rope_scaling"] = None if rope_type == "default" else {"type": rope_type, **params}
    config["torch_dtype"] = config.pop("dtype")
    config.pop("layer_types", None)
    return config


@torch.no_grad()
def reference(model, prompt):
    """fp32 logits of every prompt position and the greedy continuation (no stop token)."""
    model = model.float().eval()
    logits = model(torch.tensor([prompt])).logits[0]
    ids = list(prompt)
    greedy, margins = [], []
    for _ in range(GREEDY_TOKENS):
        last = model(torch.tensor([ids])).logits[0, -1]
        top = torch.topk(last, 2).values
        margins.append(float(top[0] - top[1]))
        token = int(torch.argmax(last))
        greedy.append(token)
        ids.append(token)
    return logits, greedy, margins


def load(spec, out):
    return spec["cls"].from_pretrained(out, dtype=spec["dtype"], attn_implementation="eager")


def make(spec, out_root, seed):
    """Saves the fixture and returns its reference, or None if a greedy step has no clear winner."""
    out = out_root / spec["name"]
    if out.exists():
        shutil.rmtree(out)
    torch.manual_seed(seed)
    model = spec["cls"](spec["config"])
    randomize(model, seed, spec.get("residual_gain", 1.0))
    save_args = {"max_shard_size": spec["shard_size"]} if "shard_size" in spec else {}
    model.to(spec["dtype"]).save_pretrained(out, **save_args)
    if spec["generation_eos"] is not None:
        path = out / "generation_config.json"
        generation = json.loads(path.read_text())
        generation["eos_token_id"] = spec["generation_eos"]
        path.write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")

    # The reference comes from the saved directory as transformers itself loads it (weights in the
    # checkpoint dtype, upcast to fp32; RoPE frequencies stay fp32).
    logits, greedy, margins = reference(load(spec, out), PROMPT)
    if min(margins) < MIN_MARGIN or len(set(greedy)) < MIN_DISTINCT:
        return None
    if spec["form"] == "4.x":
        path = out / "config.json"
        path.write_text(json.dumps(to_4x_form(json.loads(path.read_text())), indent=2, sort_keys=True) + "\n")
        rewritten, _, _ = reference(load(spec, out), PROMPT)
        assert torch.equal(logits, rewritten), f"{spec['name']}: the 4.x-form config loads to a different model"

    logits.numpy().astype("<f4").tofile(out / "reference_logits.bin")
    (out / "reference.json").write_text(json.dumps({
        "prompt": PROMPT,
        "greedy": greedy,
        "greedy_min_margin": min(margins),
        "logits_file": "reference_logits.bin",
        "logits_shape": list(logits.shape),
        "seed": seed,
        "config_form": spec["form"],
        "dtype": str(spec["dtype"]).removeprefix("torch."),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{spec['name']}: seed {seed}, {size} bytes, greedy {greedy}, min margin {min(margins):.4f}")
    return greedy


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests/fixtures/hf")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(fixtures()):
        # Seeds are tried in a fixed order, so the output is reproducible.
        seed = args.seed + 100 * i
        while make(spec, args.out, seed) is None:
            seed += 1


if __name__ == "__main__":
    main()
