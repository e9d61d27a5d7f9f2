"""Prompt sets for self-distillation (JSON lines of {"text"} or {"messages"}, what `specq tokenize` reads).

- `stories`: TinyStories-style openers built from disjoint word lists: the train and eval splits
  share no name and no opening pattern, so no evaluation opener is a training prompt.
- `spec-bench`: Spec-Bench questions of the given categories (none of MT-Bench's eight), as chat
  messages with the system prompt specq's evaluation uses (src/eval/prompts.cpp), first turn only.
"""
import itertools
import json
import random

# Each split has its own names and sentence patterns.
_STORY_WORDS = {
    "train": {
        "names": ["Lily", "Tom", "Sue", "Ben", "Max", "Anna", "Tim", "Mia", "Sam", "Lucy", "Jack", "Emma", "Bob",
                  "Sara", "Leo", "Zoe"],
        "patterns": [
            "Once upon a time, there was a little {adj} {thing} named {name}.",
            "One day, {name} went to the {place} with {pron} mom.",
            "{name} had a big {adj} {thing}. {pronc} loved it very much.",
            "There was a {adj} {thing} who lived in a {place}.",
            "{name} and {pron} friend wanted to play in the {place}.",
        ],
    },
    "eval": {
        "names": ["Kim", "Joe", "Amy", "Dan", "Ella", "Finn", "Rosa", "Ned"],
        "patterns": [
            "Once there was a {adj} {thing} called {name} who liked the {place}.",
            "It was a sunny day and {name} saw a {adj} {thing} near the {place}.",
        ],
    },
}
_ADJ = ["happy", "small", "red", "kind", "sad", "shiny", "brave", "funny"]
_THINGS = ["dog", "cat", "bird", "girl", "boy", "bunny", "ball", "tree", "fish", "bear"]
_PLACES = ["park", "garden", "forest", "house", "sea", "school"]


def story_openers(split, count, seed=0):
    words = _STORY_WORDS[split]
    rng = random.Random(f"{split}:{seed}")
    combos = list(itertools.product(words["patterns"], words["names"], _ADJ, _THINGS, _PLACES))
    rng.shuffle(combos)
    out = []
    for pattern, name, adj, thing, place in combos[:count]:
        pron = rng.choice(["his", "her"])
        text = pattern.format(name=name, adj=adj, thing=thing, place=place, pron=pron,
                              pronc="He" if pron == "his" else "She")
        out.append({"text": text})
    return out


SEED_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being "
    "safe.  Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal "
    "content. Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question "
    "does not make any sense, or is not factually coherent, explain why instead of answering something not "
    "correct. If you don't know the answer to a question, please don't share false information.")

MT_BENCH_CATEGORIES = {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}


def spec_bench_prompts(path, categories, per_category, max_chars=0):
    """First turns of Spec-Bench questions in `categories` (MT-Bench's own categories are refused)."""
    bad = set(categories) & MT_BENCH_CATEGORIES
    if bad:
        raise ValueError(f"categories {sorted(bad)} are MT-Bench questions: they would overlap the evaluation")
    taken = {c: 0 for c in categories}
    out = []
    with open(path) as f:
        for line in f:
            q = json.loads(line)
            c = q["category"]
            if c not in taken or taken[c] >= per_category:
                continue
            if max_chars and len(q["turns"][0]) > max_chars:
                continue
            taken[c] += 1
            out.append({"messages": [{"role": "system", "content": SEED_SYSTEM_PROMPT},
                                     {"role": "user", "content": q["turns"][0]}],
                        "source": f"spec_bench:{q['question_id']}:{c}"})
    return out
