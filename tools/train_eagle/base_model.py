"""The frozen base (target) model in PyTorch: its final-normed hidden states, embedding and LM head.

Loads what specq loads for the models the trainer is used on:
- a llama2.c checkpoint (`.bin`, or a directory holding one), converted here to a transformers
  LlamaConfig + state dict; q/k rows go from llama2.c's interleaved RoPE pairs to the rotate-half
  layout exactly as specq's loader does (src/io/rope_layout.cpp), so greedy ids agree with specq;
- a GGUF file (or a directory holding one) through transformers' `gguf_file=` (dequantized to fp32;
  needs the gguf and accelerate packages; ~20 s for SmolLM2-135M on 2 cores);
- a Hugging Face directory (config.json + safetensors).
"""
import struct
from pathlib import Path

import numpy as np
import torch

def rotate_half_source_rows(heads, head_dim):
    """Row r of the rotate-half matrix is row rows[r] of the interleaved one (as src/io/rope_layout.cpp)."""
    half = head_dim // 2
    return [h * head_dim + 2 * i + j for h in range(heads) for j in range(2) for i in range(half)]


def llama2c_to_hf(path):
    """A llama2.c checkpoint as (transformers LlamaConfig, state dict of fp32 tensors)."""
    from transformers import LlamaConfig

    raw = Path(path).read_bytes()
    dim, hidden, layers, heads, kv_heads, vocab_field, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab_field > 0
    vocab = abs(vocab_field)
    head_dim = dim // heads
    kv_dim = kv_heads * head_dim
    values = np.frombuffer(raw, dtype="<f4", offset=28)
    cursor = 0

    def take(*shape):
        nonlocal cursor
        n = int(np.prod(shape))
        if cursor + n > values.size:
            raise ValueError(f"{path}: truncated llama2.c checkpoint")
        t = torch.from_numpy(values[cursor:cursor + n].copy()).reshape(shape)
        cursor += n
        return t

    sd = {"model.embed_tokens.weight": take(vocab, dim)}
    per_layer = {}
    for name, shape in [("input_layernorm", (dim,)), ("self_attn.q_proj", (dim, dim)),
                        ("self_attn.k_proj", (kv_dim, dim)), ("self_attn.v_proj", (kv_dim, dim)),
                        ("self_attn.o_proj", (dim, dim)), ("post_attention_layernorm", (dim,)),
                        ("mlp.gate_proj", (hidden, dim)), ("mlp.down_proj", (dim, hidden)),
                        ("mlp.up_proj", (hidden, dim))]:
        per_layer[name] = [take(*shape) for _ in range(layers)]  # llama2.c stores each kind for all layers
    sd["model.norm.weight"] = take(dim)
    cursor += seq_len * head_dim  # freq_cis real and imag (recomputed from rope_theta)
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"] if shared else take(vocab, dim)
    q_rows = rotate_half_source_rows(heads, head_dim)
    k_rows = rotate_half_source_rows(kv_heads, head_dim)
    for name, tensors in per_layer.items():
        for i, t in enumerate(tensors):
            if name == "self_attn.q_proj":
                t = t[q_rows]
            elif name == "self_attn.k_proj":
                t = t[k_rows]
            sd[f"model.layers.{i}.{name}.weight"] = t
    config = LlamaConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                         max_position_embeddings=seq_len, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=shared, bos_token_id=1, eos_token_id=2, attention_bias=False,
                         mlp_bias=False, hidden_act="silu")
    return config, sd


def _find(path, suffix):
    p = Path(path)
    if p.is_file():
        return p
    hits = sorted(p.glob(f"*{suffix}"))
    return hits[0] if hits else None


class BaseModel:
    """A frozen causal LM: final-normed hidden states, embedding, LM head and RoPE for the head."""

    def __init__(self, path, device="cpu"):
        from transformers import AutoModelForCausalLM, LlamaForCausalLM

        self.device = torch.device(device)
        gguf = _find(path, ".gguf")
        llama2c = None if gguf is not None else _find(path, ".bin")
        if Path(path).is_dir() and (Path(path) / "config.json").exists():
            gguf = llama2c = None
        if gguf is not None and gguf.suffix == ".gguf":
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        elif llama2c is not None and llama2c.suffix == ".bin":
            config, sd = llama2c_to_hf(llama2c)
            model = LlamaForCausalLM(config)
            missing, unexpected = model.load_state_dict(sd, strict=False)
            # Tied checkpoints have no separate lm_head tensor beyond the embedding; nothing else may be missing.
            if unexpected or [m for m in missing if m != "lm_head.weight"]:
                raise ValueError(f"{path}: state dict mismatch: missing {missing}, unexpected {unexpected}")
            if config.tie_word_embeddings:
                model.tie_weights()
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        model.to(self.device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        c = model.config
        self.config = c
        self.hidden_size = c.hidden_size
        self.num_heads = c.num_attention_heads
        self.num_kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.intermediate_size = c.intermediate_size
        self.rms_norm_eps = c.rms_norm_eps
        self.vocab_size = c.vocab_size
        self.embed_weight = model.get_input_embeddings().weight
        self.lm_head_weight = model.get_output_embeddings().weight

    @torch.no_grad()
    def hidden_states(self, ids):
        """[L, H] final-normed hidden states of one sequence (what specq's runner hands the drafter)."""
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        return self.model.model(input_ids=x).last_hidden_state[0]

    @torch.no_grad()
    def rope(self, positions):
        """(cos, sin), each [len(positions), head_dim], with the base's RoPE (theta and scaling)."""
        pos = torch.as_tensor(positions, dtype=torch.long, device=self.device)[None]
        dummy = torch.zeros(1, 1, self.head_dim, device=self.device)
        cos, sin = self.model.model.rotary_emb(dummy, pos)
        return cos[0], sin[0]

    @torch.no_grad()
    def greedy(self, prompt_ids, new_tokens, stop_ids=()):
        """Plain greedy decoding with a full forward per token (reference; small models only)."""
        ids = list(prompt_ids)
        out = []
        for _ in range(new_tokens):
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, -1]
            nxt = int(torch.argmax(logits))
            out.append(nxt)
            ids.append(nxt)
            if nxt in stop_ids:
                break
        return out
