"""Run every benchmark in sequence (each side by side with its peer) and keep their outputs.

    make bench            # installs the `bench` extra (tokenizers, transformers, torch) first
    python scripts/bench_all.py [--only train,generate] [--out runs/bench]

Each script prints a markdown table and a JSON line; they are copied to OUT/NAME.txt. BENCHMARKS.md
quotes these tables. Benchmarks are sequential on purpose: on a small machine they would slow each other.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {  # name -> arguments of scripts/bench_NAME.py
    "bpe_train": ["--repeats", "5"],
    "encode": ["--repeats", "5"],
    "compile": ["--repeats", "3", "--unrolled-layers", "48"],
    "train": ["--steps", "6", "--repeats", "3"],
    "generate": ["--repeats", "5"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ", ".join(BENCHES))
    p.add_argument("--out", default="runs/bench", help="folder for each benchmark's output")
    a = p.parse_args(argv)
    names = [n for n in a.only.split(",") if n]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        p.error(f"unknown benchmarks {unknown}; choose from {sorted(BENCHES)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *BENCHES[name]]
        print(f"\n### {name}: {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        (out / f"{name}.txt").write_text(r.stdout + r.stderr)
        print(r.stdout, end="")
        print(f"({name}: {time.perf_counter() - t:.0f} s, exit {r.returncode})", flush=True)
        if r.returncode:
            failed.append(name)
            print(r.stderr[-2000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
