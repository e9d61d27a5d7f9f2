#!/usr/bin/env python3
"""Trains an EAGLE-1/2 draft head for specq by self-distillation (see README.md beside this file).

  train_eagle.py prompts stories --split train --count 300 --out P.jsonl
  train_eagle.py prompts spec-bench --questions Q.jsonl --categories qa,translation --per-category 80 --out P.jsonl
  train_eagle.py data  --specq BIN --model M --prompts P.jsonl --out D.jsonl [--max-new-tokens 256] [--add-special]
  train_eagle.py train --model M --data D.jsonl --out HEAD_DIR [--epochs 4] [--lr 1e-3] ...
  train_eagle.py tau   --specq BIN --model M --prompts EVAL.jsonl --eagle HEAD_DIR --eagle random:1
  train_eagle.py check-base --specq BIN --model M --prompt-ids 1,2,3 [--new-tokens 32]

`data` asks specq itself for the target's greedy answers (prompt ids from `specq tokenize`, answers
from `specq generate --json`); `train` computes the target's final-normed hidden states in PyTorch
and trains the head with EAGLE's loss; `check-base` checks that the PyTorch base and specq agree.
"""
import argparse
import hashlib
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prompts import spec_bench_prompts, story_openers  # noqa: E402


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---- prompts / data: specq does tokenization and greedy generation ------------------------------------------

def cmd_prompts(args):
    if args.kind == "stories":
        rows = story_openers(args.split, args.count, args.seed)
    else:
        rows = spec_bench_prompts(args.questions, args.categories.split(","), args.per_category, args.max_chars)
    with open(args.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    log(f"{len(rows)} prompts -> {args.out}")


def specq_tokenize(specq, model, prompts_path, add_special):
    cmd = [specq, "tokenize", "--model", model, "--input", prompts_path] + (["--add-special"] if add_special else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line)["ids"] for line in out.splitlines() if line.strip()]


def specq_generate(specq, model, prompt_ids, new_tokens, threads, extra=()):
    cmd = [specq, "generate", "--model", model, "--prompt-ids", ",".join(map(str, prompt_ids)),
           "--max-new-tokens", str(new_tokens), "--json", "--threads", str(threads), *extra]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def cmd_data(args):
    prompts = [json.loads(line) for line in open(args.prompts) if line.strip()]
    ids = specq_tokenize(args.specq, args.model, args.prompts, args.add_special)
    done = 0
    out = Path(args.out)
    if out.exists():  # resume: keep finished lines
        done = sum(1 for line in open(out) if line.strip())
    start = time.time()
    with open(out, "a") as f:
        for i in range(done, len(ids)):
            prompt_ids = ids[i][-args.max_prompt_tokens:] if args.max_prompt_tokens else ids[i]
            result = specq_generate(args.specq, args.model, prompt_ids, args.max_new_tokens, args.threads)
            row = {"prompt_ids": prompt_ids, "answer_ids": result["token_ids"],
                   "source": prompts[i].get("source", prompts[i].get("text", ""))}
            f.write(json.dumps(row) + "\n")
            f.flush()
            if (i + 1) % 10 == 0 or i + 1 == len(ids):
                log(f"[data] {i + 1}/{len(ids)} sequences, {time.time() - start:.0f} s")
    log(f"data -> {out}")


def cmd_tau(args):
    """tau (mean accepted length) of specq's EAGLE drafting with each head over a prompt set, and whether
    every greedy answer equals plain decoding."""
    ids = specq_tokenize(args.specq, args.model, args.prompts, args.add_special)[:args.limit or None]
    report = {"prompts": len(ids), "max_new_tokens": args.max_new_tokens, "heads": {}}
    plain = [specq_generate(args.specq, args.model, p, args.max_new_tokens, args.threads) for p in ids]
    report["ar_tokens_per_second"] = sum(r["tokens_per_second"] for r in plain) / len(plain)
    for head in args.eagle:
        runs = [specq_generate(args.specq, args.model, p, args.max_new_tokens, args.threads,
                               ["--spec", "eagle", "--eagle", head]) for p in ids]
        steps = sum(r["target_steps"] for r in runs)
        accepted = sum(r["mean_accepted_length"] * r["target_steps"] for r in runs)
        report["heads"][head] = {
            "tau": accepted / max(1, steps),
            "tau_mean_over_prompts": sum(r["mean_accepted_length"] for r in runs) / len(runs),
            "tokens_per_second": sum(r["tokens_per_second"] for r in runs) / len(runs),
            "greedy_equal": sum(r["token_ids"] == p["token_ids"] for r, p in zip(runs, plain)),
        }
        log(f"[tau] {head}: {report['heads'][head]}")
    print(json.dumps(report, indent=2))
    return 0 if all(h["greedy_equal"] == len(ids) for h in report["heads"].values()) else 1


def cmd_check_base(args):
    import torch

    from base_model import BaseModel

    torch.set_num_threads(args.threads)
    base = BaseModel(args.model, args.device)
    prompt = [int(x) for x in args.prompt_ids.split(",")] if args.prompt_ids else [base.config.bos_token_id]
    ours = base.greedy(prompt, args.new_tokens)
    theirs = specq_generate(args.specq, args.model, prompt, args.new_tokens, args.threads)["token_ids"]
    same = ours[:len(theirs)] == theirs  # specq stops at EOS; the reference runs on
    print(json.dumps({"pytorch": ours, "specq": theirs, "equal": same}))
    return 0 if same else 1


# ---- training --------------------------------------------------------------------------------------------

def load_sequences(path, max_len):
    """Rows of the data file as (ids, first target position): the head learns at t >= len(prompt) - 1."""
    seqs = []
    for line in open(path):
        if not line.strip():
            continue
        row = json.loads(line)
        ids = (row["prompt_ids"] + row["answer_ids"])[:max_len]
        first = len(row["prompt_ids"]) - 1
        if len(ids) - 1 > first and len(row["answer_ids"]) > 0:
            seqs.append((ids, first))
    return seqs


def eagle_batch(base, items, feats, noise_std, gen):
    """Padded tensors for one batch. Head input t = (token x_{t+1}, feature f_t) at position t; target f_{t+1}."""
    import torch

    n = max(len(ids) for ids, _ in items) - 1
    b, h = len(items), base.hidden_size
    tokens = torch.zeros(b, n, dtype=torch.long)
    feat = torch.zeros(b, n, h)
    target = torch.zeros(b, n, h)
    real = torch.zeros(b, n, dtype=torch.bool)
    loss_mask = torch.zeros(b, n, dtype=torch.bool)
    for i, ((ids, first), f) in enumerate(zip(items, feats)):
        m = len(ids) - 1
        tokens[i, :m] = torch.tensor(ids[1:])
        x = f[:m]
        if noise_std > 0:
            # EAGLE's uniform feature noise: (U[0,1) - 0.5) * std * 512 / sequence length (its main.py).
            x = x + (torch.rand(x.shape, generator=gen) - 0.5) * (noise_std * 512 / (m + 1))
        feat[i, :m] = x
        target[i, :m] = f[1:m + 1]
        real[i, :m] = True
        loss_mask[i, first:m] = True
    return tokens, feat, target, real, loss_mask


def head_step(head, base, batch, v_w, p_w):
    """EAGLE's loss on one batch: v_w * SmoothL1(o, f_{t+1}) + p_w * CE(softmax(lm_head f_{t+1}), lm_head o)."""
    import torch
    import torch.nn.functional as F

    tokens, feat, target, real, loss_mask = (t.to(base.device) for t in batch)
    emb = base.embed_weight[tokens]
    cos, sin = base.rope(range(tokens.shape[1]))
    pred = head(emb, feat, cos, sin, real)
    p, t = pred[loss_mask], target[loss_mask]
    vloss = F.smooth_l1_loss(p, t, reduction="none").mean(-1).mean()
    with torch.no_grad():
        target_logits = t @ base.lm_head_weight.T
        target_p = torch.softmax(target_logits, -1)
    logits = p @ base.lm_head_weight.T
    ploss = -(target_p * torch.log_softmax(logits, -1)).sum(-1).mean()
    correct = (logits.argmax(-1) == target_logits.argmax(-1)).sum().item()
    return v_w * vloss + p_w * ploss, vloss.item(), ploss.item(), correct, int(loss_mask.sum())


def cmd_train(args):
    import torch

    from base_model import BaseModel
    from head import EagleHead, save_head

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.time()
    base = BaseModel(args.model, args.device)
    seqs = load_sequences(args.data, args.max_len)
    if not seqs:
        sys.exit(f"error: {args.data} has no usable sequences")
    rng = random.Random(args.seed)
    rng.shuffle(seqs)
    n_val = max(1, int(len(seqs) * args.val_fraction)) if len(seqs) > 1 and args.val_fraction > 0 else 0
    val, train = seqs[:n_val], seqs[n_val:]
    log(f"[train] {len(train)} training and {len(val)} held-out sequences, "
        f"{sum(len(s) - 1 - f for s, f in train)} trained positions; base loaded in {time.time() - start:.1f} s")

    t0 = time.time()
    feats = {}
    for i, (ids, _) in enumerate(seqs):
        feats[i] = base.hidden_states(ids).cpu()
    index = {id(s): i for i, s in enumerate(seqs)}
    log(f"[train] hidden states of {len(seqs)} sequences in {time.time() - t0:.1f} s")

    head = EagleHead.for_base(base, bias=not args.no_bias).to(base.device)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total = args.max_steps or steps_per_epoch * args.epochs
    warmup = max(1, int(total * args.warmup_fraction))
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    # Linear warmup, then linear decay to zero over the run.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    gen = torch.Generator().manual_seed(args.seed)

    def evaluate(items):
        head.eval()
        tot = vl = pl = corr = cnt = 0
        with torch.no_grad():
            for k in range(0, len(items), args.batch_size):
                chunk = items[k:k + args.batch_size]
                batch = eagle_batch(base, chunk, [feats[index[id(s)]] for s in chunk], 0.0, gen)
                loss, v, p, c, n = head_step(head, base, batch, args.v_w, args.p_w)
                tot += loss.item() * n
                vl += v * n
                pl += p * n
                corr += c
                cnt += n
        head.train()
        return {"loss": tot / cnt, "vloss": vl / cnt, "ploss": pl / cnt, "top1": corr / cnt}

    history = []
    first_eval = evaluate(val if val else train[:args.batch_size])
    log(f"[train] before: {first_eval}")
    history.append({"step": 0, "eval": first_eval})
    step = 0
    t0 = time.time()
    while step < total:
        order = list(train)
        rng.shuffle(order)
        run_loss = run_n = run_c = 0
        for k in range(0, len(order), args.batch_size):
            if step >= total:
                break
            chunk = order[k:k + args.batch_size]
            batch = eagle_batch(base, chunk, [feats[index[id(s)]] for s in chunk], args.noise_std, gen)
            loss, v, p, c, n = head_step(head, base, batch, args.v_w, args.p_w)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(head.parameters(), args.grad_clip)  # EAGLE clips by value
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item() * n
            run_n += n
            run_c += c
            if step % args.log_every == 0:
                log(f"[train] step {step}/{total} loss {run_loss / run_n:.4f} top1 {run_c / run_n:.3f} "
                    f"lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f} s")
        entry = {"step": step, "train_loss": run_loss / max(1, run_n), "train_top1": run_c / max(1, run_n)}
        if val:
            entry["eval"] = evaluate(val)
        history.append(entry)
        log(f"[train] epoch done at step {step}: {entry}")
    data_sha = hashlib.sha256(Path(args.data).read_bytes()).hexdigest()
    info = {"base_model": str(args.model), "data": str(args.data), "data_sha256": data_sha,
            "sequences": {"train": len(train), "held_out": len(val)},
            "trained_positions": sum(len(s) - 1 - f for s, f in train),
            "args": {k: v for k, v in vars(args).items() if k != "func"},
            "steps": step, "seconds": round(time.time() - start, 1), "history": history}
    save_head(head, base, args.out, info)
    log(f"[train] head -> {args.out} ({time.time() - start:.0f} s in all)")
    print(json.dumps({"out": args.out, "before": first_eval, "after": history[-1].get("eval"),
                      "final_train_loss": history[-1].get("train_loss")}))


# Options several subcommands share.
_COMMON = {
    "--specq": dict(required=True, help="the specq binary"),
    "--model": dict(required=True, help="the base model, as specq --model takes it"),
    "--prompts": dict(required=True, help="JSON lines of {\"text\"} or {\"messages\"}"),
    "--add-special": dict(action="store_true", help="BOS before plain-text prompts"),
    "--threads": dict(type=int, default=2),
}


def add_common(p, *names):
    for name in names:
        p.add_argument(name, **_COMMON[name])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("prompts", help="write a prompt set (JSON lines)")
    p.add_argument("kind", choices=["stories", "spec-bench"])
    p.add_argument("--out", required=True)
    p.add_argument("--split", choices=["train", "eval"], default="train")
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--questions", help="Spec-Bench question.jsonl")
    p.add_argument("--categories", default="qa,math_reasoning,translation")
    p.add_argument("--per-category", type=int, default=80)
    p.add_argument("--max-chars", type=int, default=0, help="skip questions longer than this (0 = keep all)")
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("data", help="self-distillation: the target's greedy answers, by specq")
    add_common(p, "--specq", "--model", "--prompts", "--add-special", "--threads")
    p.add_argument("--out", required=True)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--max-prompt-tokens", type=int, default=0, help="keep the last N prompt ids (0 = all)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train the head")
    add_common(p, "--model", "--threads")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = --epochs)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-fraction", type=float, default=0.05)
    p.add_argument("--grad-clip", type=float, default=0.5)
    p.add_argument("--v-w", type=float, default=1.0)
    p.add_argument("--p-w", type=float, default=0.1)
    p.add_argument("--noise-std", type=float, default=0.2, help="EAGLE's uniform feature noise (0 = none)")
    p.add_argument("--max-len", type=int, default=2048)
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--no-bias", action="store_true", help="fc without bias")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=20)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tau", help="tau of specq's EAGLE decoding with the given heads on a prompt set")
    add_common(p, "--specq", "--model", "--prompts", "--add-special", "--threads")
    p.add_argument("--eagle", action="append", required=True, help="head directory or random:SEED (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--limit", type=int, default=0)
    p.set_defaults(func=cmd_tau)

    p = sub.add_parser("check-base", help="PyTorch greedy ids vs specq's")
    add_common(p, "--specq", "--model", "--threads")
    p.add_argument("--prompt-ids", default="")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_check_base)

    args = ap.parse_args()
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
