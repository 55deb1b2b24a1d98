"""Encoding throughput of Tokenizer.encode with GPT-2's vocabulary vs tiktoken, same text, same run.

    .venv/bin/python scripts/bench_encode.py [--repeats 5] [--corpus ../shared/data/bench_corpus.txt]

Rounds interleave the contenders so machine noise hits them alike; the table gives medians.
"cold" is a freshly built Tokenizer (empty pre-token cache), "warm" its second pass over the same text.
The encode_file rows run the CLI's function (fresh tokenizer, file -> .npy) with 1 and 2 workers.
Needs tiktoken (the `bench` or `test` extra) and ../shared/peers/tiktoken_gpt2.py.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tokenizer import Tokenizer
from tokenizer.encode import encode_file

SHARED = Path(__file__).resolve().parents[2] / "shared"
EOT = "<|endoftext|>"


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED / "data" / "bench_corpus.txt")
    parser.add_argument("--data", type=Path, default=SHARED / "data", help="holds gpt2_vocab.json, gpt2_merges.txt")
    parser.add_argument("--peers", type=Path, default=SHARED / "peers", help="holds tiktoken_gpt2.py")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(args.peers))
    import tiktoken_gpt2  # the peer's offline GPT-2 Encoding

    reference = tiktoken_gpt2.gpt2()
    text = args.corpus.read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6

    def fresh():
        return Tokenizer.from_gpt2(args.data / "gpt2_vocab.json", args.data / "gpt2_merges.txt", [EOT])

    times: dict[str, list[float]] = {k: [] for k in ["tiktoken", "cold", "warm", "file1", "file2"]}
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ids.npy"
        for _ in range(args.repeats):
            dt, expected = _timed(lambda: reference.encode(text, allowed_special="all"))
            times["tiktoken"].append(dt)
            tok = fresh()
            dt, ids = _timed(lambda: tok.encode(text))
            times["cold"].append(dt)
            dt, ids_warm = _timed(lambda: tok.encode(text))
            times["warm"].append(dt)
            same &= ids == expected and ids_warm == expected
            for workers in (1, 2):
                stats = encode_file(fresh(), args.corpus, out, workers=workers)
                times[f"file{workers}"].append(stats.seconds)
                same &= np.array_equal(np.load(out, mmap_mode="r"), np.asarray(expected))

    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [("tiktoken `Encoding.encode` (Rust, 1 thread)", "tiktoken"),
            ("jaxlm `Tokenizer.encode`, cold cache", "cold"),
            ("jaxlm `Tokenizer.encode`, warm cache", "warm"),
            ("jaxlm `encode_file` -> .npy, 1 worker", "file1"),
            ("jaxlm `encode_file` -> .npy, 2 workers", "file2")]
    print(f"{args.corpus.name}: {mb:.2f} MB, {len(expected):,} tokens, median of {args.repeats} interleaved rounds\n")
    print("| encoder | seconds (median) | MB/s | vs tiktoken |")
    print("|---|---:|---:|---:|")
    for label, key in rows:
        print(f"| {label} | {med[key]:.3f} | {mb / med[key]:.2f} | {med['tiktoken'] / med[key]:.2f}x |")
    print(f"\nids identical to tiktoken in every run: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
