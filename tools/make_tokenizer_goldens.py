#!/usr/bin/env python3
"""Records Hugging Face reference outputs for specq's tokenizer tests.

Encodes every text of ../shared/data (MT-Bench and Spec-Bench turns, GSM8K questions and answers,
HumanEval prompts and canonical solutions) plus hand-written hard cases with HF `tokenizers`, for the
llama3 and llama2 tokenizers in ../shared/tokenizers, and renders chat templates with transformers'
apply_chat_template. Texts from ../shared are stored as references (file, line, field, index), not copied.

Usage: pip install tokenizers transformers jinja2; python3 tools/make_tokenizer_goldens.py
Writes tests/fixtures/tokenizer/{llama3,llama2}_goldens.json.gz and chat_goldens.json.
"""
import gzip
import json
import os
import sys

from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared")
OUT = os.path.join(REPO, "tests", "fixtures", "tokenizer")

# (file under ../shared, fields); a field holding a list contributes each element.
SOURCES = [
    ("data/mt_bench/question.jsonl", ["turns"]),
    ("data/spec_bench/question.jsonl", ["turns"]),
    ("data/gsm8k/test.jsonl", ["question", "answer"]),
    ("data/humaneval/HumanEval.jsonl.gz", ["prompt", "canonical_solution"]),
]

HARD_CASES = [
    "",
    " ",
    "\n",
    "  \n  ",
    "Hello world",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "你好，世界！这是一个测试。日本語のテキストも。한국어 문장입니다.",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🧑🏿‍💻 coder",
    "e\u0301 a\u0300 n\u0303 A\u030a o\u0308\u0304 combining marks",
    "line1\r\nline2\r\n\r\nline4\r",
    "a  b   c    d\t\te\n\n\nf \t \n g\t\t\t",
    "1234567 12 123 1234 3.14159 1,000,000 2024-11-25 0x1F",
    "I'M DON'T YOU'LL WE'VE SHE'D THEY'RE IT'S i'm don't it's",
    "literal specials: <|eot_id|> and <s> and </s> and <|begin_of_text|><unk>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>",
    "x </s> y<s>z",
    "\u0085next line\u00a0nbsp\u2028line sep\u3000ideographic space\u200bzero width",
    "\u017f'S long s, \u212a kelvin, \u0130stanbul",
    "tab\tseparated\tvalues\n",
    "def f(x):\n    return x**2  # comment\n\n\nclass A:\n\tpass\n",
    "a" * 300,
    "supercalifragilisticexpialidocious" * 10,
    "control \u0001\u0002\u001f\u007f chars",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 math letters",
    "مرحبا بالعالم שלום עולם สวัสดีครับ Привет мир Γειά σου",
    "literal markers: \u0120 \u2581 <0x41> \u010a",
    "https://example.com/path?q=1&b=2#frag user@example.org",
    "   ",
    "\t",
    "!!!???...,,,;;;",
    "\u2581\u2581x",
    "a\u2581b \u2581 c",
]

LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# SmolLM2-Instruct's ChatML template: a default system prompt when the conversation has none.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen2-Instruct's ChatML template (default system prompt "You are a helpful assistant.").
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SAFETY_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question does not make "
    "any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't "
    "know the answer to a question, please don't share false information."
)

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Say hi."}],
    [
        {"role": "system", "content": SAFETY_PROMPT},
        {"role": "user", "content": "Compose an engaging travel blog post about a recent trip to Hawaii."},
        {"role": "assistant", "content": "Aloha! Here is my post about Hawaii...\n\nMahalo for reading."},
        {"role": "user", "content": "Rewrite your previous response. Start every sentence with the letter A."},
    ],
    [
        {"role": "user", "content": "  padded question with spaces\n\n"},
        {"role": "assistant", "content": "\n answer with whitespace \t"},
        {"role": "user", "content": "Unicode: 你好 👨‍👩‍👧 e\u0301 <|eot_id|>"},
    ],
    [
        {"role": "system", "content": "  System prompt with padding.  "},
        {"role": "user", "content": "First"},
        {"role": "assistant", "content": "Second"},
        {"role": "user", "content": "Third"},
        {"role": "assistant", "content": "Fourth"},
        {"role": "user", "content": "Fifth"},
    ],
]


def shared_texts():
    """Yields (reference, text) for every text of ../shared/data."""
    for rel, fields in SOURCES:
        path = os.path.join(SHARED, rel)
        opener = gzip.open if rel.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f):
                record = json.loads(line)
                for field in fields:
                    value = record[field]
                    values = value if isinstance(value, list) else [value]
                    for index, text in enumerate(values):
                        yield {"file": rel, "line": line_no, "field": field, "index": index}, text


def encode_goldens(name):
    tok = Tokenizer.from_file(os.path.join(SHARED, "tokenizers", name, "tokenizer.json"))
    probe = tok.encode("probe", add_special_tokens=False).ids
    probe_special = tok.encode("probe", add_special_tokens=True).ids
    start = probe_special.index(probe[0]) if probe else 0
    prefix, suffix = probe_special[:start], probe_special[start + len(probe):]
    cases = []

    def record(ref, text):
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_special = tok.encode(text, add_special_tokens=True).ids
        case = {"ids": ids}
        case.update(ref)
        # Stored only when it is not simply prefix + ids + suffix (checked here for every text).
        if ids_special != prefix + ids + suffix:
            case["ids_special"] = ids_special
        decoded = tok.decode(ids, skip_special_tokens=False)
        if decoded != text:
            case["decoded"] = decoded
        # Decoding with BOS changes SentencePiece's leading-space strip; recorded for the hand-written cases.
        if "text" in ref:
            case["decoded_special"] = tok.decode(ids_special, skip_special_tokens=False)
            case["decoded_skip_special"] = tok.decode(ids_special, skip_special_tokens=True)
        cases.append(case)

    for ref, text in shared_texts():
        record({"ref": ref}, text)
    for text in HARD_CASES:
        record({"text": text}, text)
    golden = {"tokenizer": name, "tokenizers_version": __import__("tokenizers").__version__,
              "special_prefix": prefix, "special_suffix": suffix, "cases": cases}
    path = os.path.join(OUT, f"{name}_goldens.json.gz")
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(json.dumps(golden, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    print(f"{path}: {len(cases)} texts, {sum(len(c['ids']) for c in cases)} ids, {os.path.getsize(path)} bytes")


def chat_goldens():
    from transformers import AutoTokenizer

    llama3 = AutoTokenizer.from_pretrained(os.path.join(SHARED, "tokenizers", "llama3"))
    llama2 = AutoTokenizer.from_pretrained(os.path.join(SHARED, "tokenizers", "llama2"))
    ids_tok = Tokenizer.from_file(os.path.join(SHARED, "tokenizers", "llama3", "tokenizer.json"))
    templates = [
        ("llama3", llama3, None),
        ("llama2", llama2, LLAMA2_CHAT_TEMPLATE),
        ("chatml", llama3, CHATML_TEMPLATE),
        ("smollm2", llama3, SMOLLM2_TEMPLATE),
        ("qwen2", llama3, QWEN2_TEMPLATE),
    ]
    cases = []
    for name, tok, template in templates:
        for messages in CONVERSATIONS:
            for add_generation_prompt in (True, False):
                rendered = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                   add_generation_prompt=add_generation_prompt)
                case = {"template": name, "messages": messages, "add_generation_prompt": add_generation_prompt,
                        "bos_token": tok.bos_token, "eos_token": tok.eos_token, "rendered": rendered}
                if name == "llama3":
                    case["ids"] = ids_tok.encode(rendered, add_special_tokens=False).ids
                cases.append(case)
    golden = {"transformers_version": __import__("transformers").__version__,
              "templates": {"llama2": LLAMA2_CHAT_TEMPLATE, "chatml": CHATML_TEMPLATE, "smollm2": SMOLLM2_TEMPLATE,
                            "qwen2": QWEN2_TEMPLATE},
              "cases": cases}
    path = os.path.join(OUT, "chat_goldens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{path}: {len(cases)} renders, {os.path.getsize(path)} bytes")


def read_llama2c_vocab(path):
    import struct
    with open(path, "rb") as f:
        data = f.read()
    pos = 4
    pieces, scores = [], []
    while pos < len(data):
        score, length = struct.unpack_from("<fi", data, pos)
        pos += 8
        pieces.append(data[pos:pos + length])
        scores.append(score)
        pos += length
    return pieces, scores


def llama2c_encode(pieces, scores, text, bos):
    """A direct transcription of llama2.c run.c's encode(): the independent reference for tok512.bin."""
    lookup = {}
    for i, piece in enumerate(pieces):
        lookup.setdefault(piece, i)
    tokens = [1] if bos else []
    if text:
        tokens.append(lookup[b" "])
    for ch in text:
        cp = ch.encode("utf-8")
        if cp in lookup:
            tokens.append(lookup[cp])
        else:
            tokens.extend(b + 3 for b in cp)
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            merged = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]], -1)
            if merged != -1 and scores[merged] > best_score:
                best_score, best_id, best_idx = scores[merged], merged, i
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def llama2c_decode(pieces, ids):
    """llama2.c run.c's decode(): strip the leading space after BOS, <0xXX> tokens are raw bytes."""
    out = b""
    prev = 1
    for token in ids:
        piece = pieces[token]
        if prev == 1 and piece.startswith(b" "):
            piece = piece[1:]
        if 3 <= token < 259:
            piece = bytes([token - 3])
        out += piece
        prev = token
    return out.decode("utf-8", errors="replace")


def llama2c_goldens():
    pieces, scores = read_llama2c_vocab(os.path.join(SHARED, "models", "stories260K", "tok512.bin"))
    texts = ["Once upon a time", "Once upon a time, there was a little girl named Lily.", "", "Hello 世界 🎉!",
             "  two leading spaces", "The cat sat.\nThe dog ran."]
    cases = [{"text": t, "bos": bos, "ids": llama2c_encode(pieces, scores, t, bos)} for t in texts for bos in (False, True)]
    with open(os.path.join(SHARED, "models", "stories260K", "greedy_from_bos_256.json")) as f:
        greedy = json.load(f)["ids"]
    golden = {"cases": cases, "greedy_decoded": llama2c_decode(pieces, greedy)}
    path = os.path.join(OUT, "llama2c_goldens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{path}: {len(cases)} encodes; greedy text starts {golden['greedy_decoded'][:60]!r}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for tokenizer_name in ("llama3", "llama2"):
        encode_goldens(tokenizer_name)
    chat_goldens()
    llama2c_goldens()
    sys.exit(0)
