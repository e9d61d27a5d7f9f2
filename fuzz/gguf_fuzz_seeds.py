#!/usr/bin/env python3
"""Writes a seed corpus for gguf_fuzz into OUTDIR: small GGUF files made here (nothing binary is
committed): a tiny llama model with a byte-level BPE tokenizer and tensors of every type specq
loads, a qwen2 variant, every metadata value type, version 2, and an empty file.
Usage: gguf_fuzz_seeds.py OUTDIR
"""
import struct
import sys
from pathlib import Path

# ggml type id -> (values per block, bytes per block)
TYPES = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22),
         "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34),
         "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "BF16": (30, 1, 2)}


def s(text):
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def kv(key, type_id, payload):
    return s(key) + struct.pack("<I", type_id) + payload


def u32(key, v):
    return kv(key, 4, struct.pack("<I", v))


def f32(key, v):
    return kv(key, 6, struct.pack("<f", v))


def string(key, v):
    return kv(key, 8, s(v))


def array(key, element_type, payloads):
    return kv(key, 9, struct.pack("<IQ", element_type, len(payloads)) + b"".join(payloads))


def gguf(kvs, tensors, version=3, alignment=32):
    """tensors: (name, dims fastest first, type name); data is a deterministic byte pattern."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    offset, datas = 0, []
    for name, dims, type_name in tensors:
        type_id, block, block_bytes = TYPES[type_name]
        count = 1
        for d in dims:
            count *= d
        size = count // block * block_bytes
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", type_id, offset)
        datas.append((offset, bytes((i * 37 + 11) % 251 for i in range(size))))
        offset = (offset + size + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    start = len(out)
    for off, data in datas:
        out += b"\0" * (start + off - len(out)) + data
    return out


def tokenizer_kvs(pre):
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(ord("a"), ord("h"))]
    tokens += ["ab", "abc", "Ġ"]
    return [string("tokenizer.ggml.model", "gpt2"), string("tokenizer.ggml.pre", pre),
            array("tokenizer.ggml.tokens", 8, [s(t) for t in tokens]),
            array("tokenizer.ggml.token_type", 5, [struct.pack("<i", 3 if i < 3 else 1) for i in range(len(tokens))]),
            array("tokenizer.ggml.merges", 8, [s("a b"), s("ab c")]),
            u32("tokenizer.ggml.bos_token_id", 1), u32("tokenizer.ggml.eos_token_id", 2),
            string("tokenizer.chat_template", "{{'<|im_start|>' + message['role'] + '\\n'}}<|im_end|>")]


def model(arch, pre, matrix_type, gate_type):
    # hidden 256 lets K-quant rows (blocks of 256) run along it; the other dims stay tiny so that a
    # seed fits the fuzzer's 64 KiB input limit.
    hidden, inter, vocab, heads, kv_heads, head_dim = 256, 8, 13, 2, 1, 8
    kvs = [string("general.architecture", arch), u32(f"{arch}.block_count", 1),
           u32(f"{arch}.context_length", 64), u32(f"{arch}.embedding_length", hidden),
           u32(f"{arch}.feed_forward_length", inter), u32(f"{arch}.attention.head_count", heads),
           u32(f"{arch}.attention.head_count_kv", kv_heads), u32(f"{arch}.attention.key_length", head_dim),
           f32(f"{arch}.rope.freq_base", 10000.0), f32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5),
           u32(f"{arch}.vocab_size", vocab), u32("general.alignment", 32)] + tokenizer_kvs(pre)
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    tensors = [("token_embd.weight", [hidden, vocab], "Q8_0"), ("blk.0.attn_norm.weight", [hidden], "F32"),
               ("blk.0.attn_q.weight", [hidden, q_dim], matrix_type),
               ("blk.0.attn_k.weight", [hidden, kv_dim], matrix_type),
               ("blk.0.attn_v.weight", [hidden, kv_dim], "Q6_K"),
               ("blk.0.attn_output.weight", [q_dim, hidden], "F32"),
               ("blk.0.ffn_norm.weight", [hidden], "F32"), ("blk.0.ffn_gate.weight", [hidden, inter], gate_type),
               ("blk.0.ffn_up.weight", [hidden, inter], "Q5_K"), ("blk.0.ffn_down.weight", [inter, hidden], "BF16"),
               ("output_norm.weight", [hidden], "F32"), ("output.weight", [hidden, vocab], "F16")]
    if arch == "qwen2":
        tensors += [("blk.0.attn_q.bias", [q_dim], "F32"), ("blk.0.attn_k.bias", [kv_dim], "F32"),
                    ("blk.0.attn_v.bias", [kv_dim], "F32")]
    return gguf(kvs, tensors)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    every_type = [kv("u8", 0, b"\x05"), kv("i8", 1, b"\xfb"), kv("u16", 2, b"\x01\x02"), kv("i16", 3, b"\xff\xff"),
                  u32("u32", 7), kv("i32", 5, b"\xff\xff\xff\xff"), f32("f32", 0.5), kv("bool", 7, b"\x01"),
                  string("str", "text"), kv("u64", 10, struct.pack("<Q", 9)), kv("i64", 11, struct.pack("<q", -9)),
                  kv("f64", 12, struct.pack("<d", 0.25)), array("arr", 8, [s("x"), s("yz")]),
                  array("nested", 9, [struct.pack("<IQ", 0, 2) + b"\x01\x02"])]
    seeds = {
        "llama-q4_0": model("llama", "smollm", "Q4_0", "Q4_1"),
        "llama-q4_k": model("llama", "gpt-2", "Q4_K", "Q5_0"),
        "qwen2-f32": model("qwen2", "qwen2", "F32", "Q5_1"),
        "every-value-type": gguf(every_type, [("t", [4], "F32")]),
        "version-2": gguf([string("general.architecture", "llama")], [], version=2),
        "empty": gguf([], []),
    }
    for name, raw in seeds.items():
        assert len(raw) <= 65536, name
        (out / name).write_bytes(raw)


if __name__ == "__main__":
    main()
