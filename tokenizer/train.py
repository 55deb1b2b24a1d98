"""Train a byte-level BPE tokenizer on a text file and save it.

    python -m tokenizer.train --input FILE --vocab-size N --special-token '<|endoftext|>' --out DIR [--workers N]

Prints the training time, the peak memory and the longest tokens learned.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

from tokenizer.bpe import train_bpe
from tokenizer.tokenizer import Tokenizer


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory in MB of this process and of its largest finished child (a worker)."""
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tokenizer.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="UTF-8 text file")
    p.add_argument("--vocab-size", type=int, required=True, help="special tokens + 256 bytes + merges")
    p.add_argument("--special-token", action="append", default=[], metavar="TOKEN",
                   help="a special token (repeatable); the first one that is safe to cut at splits the file")
    p.add_argument("--out", required=True, help="directory for vocab.json, merges.txt, special_tokens.json")
    p.add_argument("--workers", type=int, default=None, help="pre-tokenizing processes (default: all CPUs)")
    p.add_argument("--longest", type=int, default=5, help="how many of the longest tokens to print")
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be at least 1")

    start = time.perf_counter()
    try:
        vocab, merges = train_bpe(args.input, args.vocab_size, args.special_token, num_workers=args.workers,
                                  progress=True)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    Tokenizer(vocab, merges, args.special_token).save(args.out)

    main_mb, worker_mb = peak_rss_mb()
    print(f"trained {len(vocab)} tokens ({len(merges)} merges) from {args.input} in {seconds:.2f} s")
    print(f"peak memory: {main_mb:.0f} MB (main process), {worker_mb:.0f} MB (largest worker)")
    specials = {s.encode("utf-8") for s in args.special_token}
    longest = sorted((t for t in vocab.values() if t not in specials), key=len, reverse=True)[:args.longest]
    print("longest tokens: " + ", ".join(repr(t.decode("utf-8", errors="replace")) for t in longest))
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
