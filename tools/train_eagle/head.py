"""The EAGLE-1/2 draft head in PyTorch: the same math as specq's CpuEagleHead (src/spec/eagle_head.h).

  e = fc(concat[embed(x), f])      fc.weight [H, 2H], the embedding half first; optional fc.bias
  a = e + Attn(e)                  one Llama attention block, no norm before it; RoPE as the base's
  o = a + MLP(RMSNorm(a))          post_attention_layernorm, SwiGLU; no final norm
  logits = base lm_head(o)

Tensor names are the ones EAGLE's published heads use and specq's loader reads
(src/spec/eagle_loader.cpp); `save_head` writes model.safetensors plus a config.json like theirs.
"""
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class EagleHead(nn.Module):
    def __init__(self, hidden, heads, kv_heads, head_dim, intermediate, eps, bias=True):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.eps = heads, kv_heads, head_dim, eps
        self.fc = nn.Linear(2 * hidden, hidden, bias=bias)
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)
        self.post_attention_layernorm = nn.Parameter(torch.ones(hidden))
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    @classmethod
    def for_base(cls, base, bias=True):
        return cls(base.hidden_size, base.num_heads, base.num_kv_heads, base.head_dim, base.intermediate_size,
                   base.rms_norm_eps, bias)

    def forward(self, emb, feat, cos, sin, pad_mask=None):
        """emb, feat: [B, L, H]; cos, sin: [L, head_dim] (positions 0..L-1); causal attention.
        pad_mask [B, L] (True = real) keeps padded keys out of every query's view. Returns o [B, L, H]."""
        b, n, _ = emb.shape
        e = self.fc(torch.cat((emb, feat), dim=-1))
        q = self.q_proj(e).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(e).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(e).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.heads // self.kv_heads
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        mask = torch.ones(n, n, dtype=torch.bool, device=emb.device).tril()[None, None]
        if pad_mask is not None:
            mask = mask & pad_mask[:, None, None, :]
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        a = e + self.o_proj(attn.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))
        normed = a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + self.eps) * self.post_attention_layernorm
        return a + self.down_proj(F.silu(self.gate_proj(normed)) * self.up_proj(normed))

    def state_dict_eagle(self):
        """The tensors under EAGLE's names (fp32, contiguous)."""
        layer = "layers.0."
        out = {"fc.weight": self.fc.weight}
        if self.fc.bias is not None:
            out["fc.bias"] = self.fc.bias
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[f"{layer}self_attn.{name}.weight"] = getattr(self, name).weight
        out[f"{layer}post_attention_layernorm.weight"] = self.post_attention_layernorm
        for name in ("gate_proj", "up_proj", "down_proj"):
            out[f"{layer}mlp.{name}.weight"] = getattr(self, name).weight
        return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}

    def load_eagle(self, tensors):
        layer = "layers.0."
        with torch.no_grad():
            self.fc.weight.copy_(tensors["fc.weight"])
            if self.fc.bias is not None and "fc.bias" in tensors:
                self.fc.bias.copy_(tensors["fc.bias"])
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(self, name).weight.copy_(tensors[f"{layer}self_attn.{name}.weight"])
            self.post_attention_layernorm.copy_(tensors[f"{layer}post_attention_layernorm.weight"])
            for name in ("gate_proj", "up_proj", "down_proj"):
                getattr(self, name).weight.copy_(tensors[f"{layer}mlp.{name}.weight"])


def save_head(head, base, out_dir, training_info):
    """model.safetensors + config.json (a one-layer Llama config, as EAGLE's heads ship) + training.json."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(head.state_dict_eagle(), str(out / "model.safetensors"), metadata={"format": "pt"})
    c = base.config
    rope_theta = getattr(c, "rope_theta", None)
    if rope_theta is None:  # transformers 5 keeps it in rope_parameters
        rope_theta = (getattr(c, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": base.hidden_size,
        "intermediate_size": base.intermediate_size,
        "num_attention_heads": base.num_heads,
        "num_key_value_heads": base.num_kv_heads,
        "head_dim": base.head_dim,
        "num_hidden_layers": 1,
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": base.rms_norm_eps,
        "rope_theta": rope_theta,
        "vocab_size": base.vocab_size,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bias": head.fc.bias is not None,
    }
    scaling = getattr(c, "rope_scaling", None)
    if scaling:
        config["rope_scaling"] = scaling
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(training_info, indent=2) + "\n")
