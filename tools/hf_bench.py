#!/usr/bin/env python3
"""In-run baseline for specq's CUDA numbers: Hugging Face transformers, eager attention, FP16,
Llama-3-8B shapes with random weights (decode speed does not depend on the values), greedy decode
after a random prompt on the same card. Prints one JSON object."""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()
    config = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0,
                         max_position_embeddings=8192, tie_word_embeddings=False)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).eval()
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt_tokens), device="cuda")

    def run(new_tokens):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - start

    run(4)  # warm-up
    first = min(run(1) for _ in range(2))
    full = run(args.new_tokens)
    decode = (args.new_tokens - 1) / (full - first)
    print(json.dumps({"impl": "transformers eager fp16", "transformers": __import__("transformers").__version__,
                      "torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
                      "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
                      "prefill_seconds": first, "decode_tokens_per_second": decode}))


if __name__ == "__main__":
    main()
