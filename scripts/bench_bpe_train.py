"""Benchmark BPE training: jaxlm's train_bpe vs HF tokenizers' BpeTrainer, in the same run.

    .venv/bin/python scripts/bench_bpe_train.py [--data ../shared/data] [--repeats 5] [--workers N]

Cases: CS336's corpus.en (vocab 500) and bench_corpus.txt (vocab 10,000), both with `<|endoftext|>`.
Prints one JSON line, then a markdown table of medians and ratios (ours / HF; below 1 is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from tokenizer.bpe import train_bpe
from tokenizer.workers import default_num_workers

ROOT = Path(__file__).resolve().parents[1]
EOT = "<|endoftext|>"
CASES = [("corpus.en", 500), ("bench_corpus.txt", 10_000)]


def time_ours(path: Path, vocab_size: int, workers: int | None) -> float:
    start = time.perf_counter()
    train_bpe(path, vocab_size, [EOT], num_workers=workers)
    return time.perf_counter() - start


def time_hf(path: Path, vocab_size: int) -> float:
    """As ../shared/peers/tokenizer_peers.py: byte-level BPE with the GPT-2 regex, one special token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    start = time.perf_counter()
    tok.train([str(path)], trainer)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=None, help="train_bpe workers (default: all CPUs)")
    args = p.parse_args(argv)
    try:
        import tokenizers
        hf_version = tokenizers.__version__
    except ImportError:
        hf_version = None
        print("HF tokenizers not installed (pip install -e '.[bench]'): no peer column", file=sys.stderr)

    results = []
    for name, vocab_size in CASES:
        path = args.data / name
        if not path.exists():
            print(f"skipping {name}: {path} not found", file=sys.stderr)
            continue
        time_ours(path, vocab_size, args.workers)  # warm the page cache and imports
        ours, hf = [], []
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            ours.append(time_ours(path, vocab_size, args.workers))
            if hf_version:
                hf.append(time_hf(path, vocab_size))
        row = {"corpus": name, "bytes": os.path.getsize(path), "vocab_size": vocab_size,
               "ours_median_s": statistics.median(ours), "ours_min_s": min(ours)}
        if hf:
            row |= {"hf_median_s": statistics.median(hf), "hf_min_s": min(hf),
                    "ratio_median": statistics.median(ours) / statistics.median(hf)}
        results.append(row)
        print(f"{name}: ours {row['ours_median_s']:.3f} s" + (f", HF {row['hf_median_s']:.3f} s" if hf else ""),
              file=sys.stderr)

    print(json.dumps({"bench": "bpe_train", "workers": args.workers or default_num_workers(),
                      "repeats": args.repeats, "cpus": os.cpu_count(), "tokenizers": hf_version,
                      "results": results}))
    print()
    print("| corpus | size | vocab | jaxlm train_bpe (median) | HF tokenizers BpeTrainer (median) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        hf = f"{r['hf_median_s']:.3f} s" if "hf_median_s" in r else "n/a"
        ratio = f"{r['ratio_median']:.2f}x" if "ratio_median" in r else "n/a"
        print(f"| {r['corpus']} | {r['bytes'] / 1e6:.2f} MB | {r['vocab_size']:,} | {r['ours_median_s']:.3f} s "
              f"| {hf} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
