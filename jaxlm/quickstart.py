"""The whole pipeline on the embedded story corpus, offline, in a few CPU minutes: `make quickstart`.

    python -m jaxlm.quickstart [--out runs/quickstart] [--steps 1000] [--d-model 128] ...

1. generate the corpus (train and validation stories from different seeds),
2. train a byte-level BPE tokenizer on the training split,
3. tokenize both splits to uint16 .npy files,
4. train a small Transformer LM with AdamW and a cosine schedule (`jaxlm.train.run`), evaluating on the
   validation split, saving a checkpoint and a JSONL log,
5. plot the loss curves to a PNG,
6. load the checkpoint and print a generated story (`jaxlm.generate`).
Every size is a flag (the tests turn them down). Outputs land in --out: corpus/, tokenizer/, data/,
checkpoints/, quickstart.jsonl (the training log), loss.png, summary.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from jaxlm.corpus import EOT, write_corpus


def _say(message: str) -> None:
    print(message, flush=True)


def make_corpus(out_dir: Path, train_bytes: int, val_bytes: int) -> tuple[Path, Path]:
    """Train and validation text files (seeds 0 and 1: different stories)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = out_dir / "train.txt", out_dir / "valid.txt"
    write_corpus(train, train_bytes, seed=0)
    write_corpus(val, val_bytes, seed=1)
    return train, val


def train_tokenizer(train_txt: Path, vocab_size: int, out_dir: Path):
    """A BPE tokenizer with `<|endoftext|>`, trained on train_txt and saved to out_dir."""
    from tokenizer import Tokenizer, train_bpe

    vocab, merges = train_bpe(train_txt, vocab_size, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    tok.save(out_dir)
    return tok


def tokenize(tok, text_path: Path, npy_path: Path, workers: int):
    """text -> .npy ids; returns tokenizer.encode.EncodeStats."""
    from tokenizer.encode import encode_file

    return encode_file(tok, text_path, npy_path, workers=workers)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jaxlm.quickstart", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--out", default="runs/quickstart", help="output directory (default: runs/quickstart)")
    a("--train-bytes", type=int, default=2_000_000, help="training corpus size in bytes")
    a("--val-bytes", type=int, default=200_000, help="validation corpus size in bytes")
    a("--vocab-size", type=int, default=1024, help="BPE vocabulary size (specials + 256 bytes + merges)")
    a("--context-length", type=int, default=256)
    a("--d-model", type=int, default=128)
    a("--num-layers", type=int, default=4)
    a("--num-heads", type=int, default=4)
    a("--d-ff", type=int, default=352)
    a("--batch-size", type=int, default=8)
    a("--steps", type=int, default=1000, help="training steps")
    a("--lr", type=float, default=5e-3, help="peak learning rate")
    a("--min-lr", type=float, default=5e-4)
    a("--warmup-steps", type=int, default=40)
    a("--eval-every", type=int, default=250)
    a("--eval-batches", type=int, default=8)
    a("--workers", type=int, default=2, help="tokenizing processes")
    a("--seed", type=int, default=0)
    a("--prompt", default="Once upon a time", help="start of the printed story")
    a("--max-new-tokens", type=int, default=250, help="tokens of the printed story (below --context-length)")
    a("--temperature", type=float, default=0.8)
    a("--top-p", type=float, default=0.9)
    return p


def run(args: argparse.Namespace) -> dict:
    """Run every stage; returns the summary written to <out>/summary.json."""
    from jaxlm import generate as generate_cli
    from jaxlm.train import TrainConfig
    from jaxlm.train import run as train_run

    out = Path(args.out)
    t_start = time.perf_counter()
    timings = {}

    def stage(name, title):
        timings[name] = time.perf_counter()
        _say(f"\n== {title}")

    def done(name, detail):
        timings[name] = round(time.perf_counter() - timings[name], 2)
        _say(f"   {detail} ({timings[name]:.1f}s)")

    for sub in ("corpus", "tokenizer", "data", "checkpoints"):  # a fresh run: no stale files
        shutil.rmtree(out / sub, ignore_errors=True)
    for name in ("quickstart.jsonl", "loss.png", "summary.json"):
        (out / name).unlink(missing_ok=True)

    stage("corpus", f"1/6 generating the story corpus ({args.train_bytes:,} + {args.val_bytes:,} bytes)")
    train_txt, val_txt = make_corpus(out / "corpus", args.train_bytes, args.val_bytes)
    n_stories = train_txt.read_text(encoding="utf-8").count(EOT) + 1
    done("corpus", f"{n_stories:,} training stories in {train_txt}, validation in {val_txt}")

    stage("tokenizer", f"2/6 training a BPE tokenizer (vocab {args.vocab_size:,}, {EOT})")
    tok = train_tokenizer(train_txt, args.vocab_size, out / "tokenizer")
    longest = sorted(tok.vocab.values(), key=len)[-3:]
    done("tokenizer", f"{len(tok.vocab):,} tokens in {out / 'tokenizer'}; longest: "
         + ", ".join(repr(t.decode('utf-8', 'replace')) for t in longest))

    stage("tokenize", "3/6 tokenizing both splits to uint16 .npy")
    counts = {}
    for split, path in (("train", train_txt), ("valid", val_txt)):
        stats = tokenize(tok, path, out / "data" / f"{split}.npy", args.workers)
        counts[split] = stats.n_tokens
        _say(f"   {split}: {stats.n_bytes:,} bytes -> {stats.n_tokens:,} tokens "
             f"({stats.bytes_per_token:.2f} bytes/token)")
    done("tokenize", f"token files in {out / 'data'}")

    cfg = TrainConfig(
        train_data=str(out / "data" / "train.npy"), val_data=str(out / "data" / "valid.npy"),
        tokenizer=str(out / "tokenizer"), vocab_size=tok.vocab_size, context_length=args.context_length,
        d_model=args.d_model, num_layers=args.num_layers, num_heads=args.num_heads, d_ff=args.d_ff,
        batch_size=args.batch_size, max_steps=args.steps, lr=args.lr, min_lr=args.min_lr,
        warmup_steps=min(args.warmup_steps, args.steps), eval_every=args.eval_every,
        eval_batches=args.eval_batches, log_every=max(1, min(10, args.steps // 10)),
        log_file=str(out / "quickstart.jsonl"), checkpoint_dir=str(out / "checkpoints"), checkpoint_every=0,
        keep=1, seed=args.seed)
    n_params = _param_count(cfg)
    tokens_seen = args.steps * args.batch_size * args.context_length
    stage("train", f"4/6 training a {n_params / 1e6:.2f}M-parameter LM: {args.steps} steps x "
          f"{args.batch_size} x {args.context_length} tokens ({tokens_seen / counts['train']:.1f} epochs), "
          f"cosine lr {args.lr:g} -> {args.min_lr:g}")
    interactive = sys.stderr.isatty()  # a terminal gets train's progress bar; logs get one line per record

    def progress(record):
        if "val_loss" in record:
            _say(f"   step {record['step']:>5}: val loss {record['val_loss']:.3f} "
                 f"(perplexity {record['val_perplexity']:.1f}, {record['elapsed_s']:.0f}s)")
        elif "train_loss" in record and not interactive and record["step"] % (10 * cfg.log_every) == 0:
            _say(f"   step {record['step']:>5}: train loss {record['train_loss']:.3f}, "
                 f"{record['tokens_per_sec']:,.0f} tokens/s")

    summary = train_run(cfg, callback=progress, quiet=not interactive)
    done("train", f"final train loss {summary['final_train_loss']:.3f}, val loss "
         f"{summary['final_val_loss']:.3f}; checkpoint {summary['checkpoint']}, log {cfg.log_file}")

    stage("plot", "5/6 plotting the loss curves")
    try:
        from jaxlm.plot import plot_runs

        png = plot_runs([cfg.log_file], out / "loss.png", title="jaxlm quickstart")
        done("plot", f"wrote {png}")
    except (ImportError, SystemExit) as e:  # matplotlib is optional
        done("plot", f"skipped ({e})")

    stage("generate", f"6/6 a story from the checkpoint (prompt {args.prompt!r})\n")
    gen_args = generate_cli.build_parser().parse_args([
        "--checkpoint", summary["checkpoint"], "--prompt", args.prompt,
        "--max-new-tokens", str(args.max_new_tokens), "--temperature", str(args.temperature),
        "--top-p", str(args.top_p), "--seed", str(args.seed)])
    sample = generate_cli.run(gen_args)
    done("generate", "")

    result = {"val_loss": summary["final_val_loss"], "train_loss": summary["final_train_loss"],
              "params": n_params, "steps": args.steps, "train_tokens_per_sec": summary["tokens_per_sec"],
              "sample": args.prompt + sample["samples"][0], "generate_tokens_per_sec": sample["tokens_per_sec"],
              "timings_s": timings, "wall_s": round(time.perf_counter() - t_start, 1),
              "checkpoint": summary["checkpoint"], "args": vars(args)}
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    _say(f"\nDone in {result['wall_s']:.0f}s: val loss {result['val_loss']:.3f}. Everything is in {out}/ "
         f"(summary.json, quickstart.jsonl, loss.png, checkpoints/). More samples:\n"
         f"  python -m jaxlm.generate --checkpoint {out / 'checkpoints'} --prompt \"Once upon a time\"")
    return result


def _param_count(cfg) -> int:
    from jaxlm.accounting import param_count

    return int(param_count(cfg.model_config()))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from jaxlm.generate import CliError
    from jaxlm.train import ConfigError, TrainingDiverged

    try:
        run(args)
    except (ConfigError, CliError, ValueError, OSError) as e:
        print(f"quickstart: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"quickstart: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
