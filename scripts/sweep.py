"""Launch a grid of `python -m jaxlm.train` runs and tabulate their final validation losses.

    python scripts/sweep.py --out-dir runs/lr --grid lr=1e-3,3e-3,1e-2 batch_size=16,32 -- \
        --train-data data/train.npy --val-data data/valid.npy --max-steps 2000 --eval-every 200

Every grid point becomes one run named after its values (`lr=1e-3_batch_size=16`) with its own
`--log-file OUT/NAME.jsonl`, `--checkpoint-dir OUT/NAME/` and console output in `OUT/NAME.out`; flags
after `--` go to every run unchanged. Grid keys are train flags without dashes (`batch_size` or
`batch-size`); `true`/`false` values switch a boolean flag such as `no_rope=false,true`. Runs go one at
a time (or `--parallel N` at once). The table of final val loss, perplexity, train loss and wall-clock
time goes to OUT/results.md and OUT/results.csv, and is printed.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jaxlm.plot import read_log

COLUMNS = ("run", "status", "final_step", "val_loss", "val_perplexity", "train_loss", "elapsed_s")


def parse_grid(specs) -> list[tuple[str, list[str]]]:
    """["lr=1e-3,3e-3", "batch_size=16,32"] -> [("lr", ["1e-3", "3e-3"]), ("batch-size", ["16", "32"])]."""
    grid = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not items:
            raise ValueError(f"bad --grid entry {spec!r}: expected KEY=V1,V2,...")
        if key in {k for k, _ in grid}:
            raise ValueError(f"--grid names {key!r} twice")
        grid.append((key, items))
    return grid


def expand_grid(grid) -> list[dict[str, str]]:
    """Every combination of the grid's values, in row-major order."""
    keys = [k for k, _ in grid]
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]


def run_name(point: dict[str, str]) -> str:
    return "_".join(f"{k.replace('-', '_')}={v}" for k, v in point.items()) or "base"


def flags_for(point: dict[str, str]) -> list[str]:
    """Train flags for one grid point; true/false toggle a boolean flag."""
    flags = []
    for key, value in point.items():
        if value.lower() in ("true", "false"):
            flags += [f"--{key}"] if value.lower() == "true" else []
        else:
            flags += [f"--{key}", value]
    return flags


def final_metrics(log_path: Path) -> dict:
    """The last val/train losses of a run's log (NaN where absent)."""
    nan = float("nan")
    if not log_path.exists():
        return {"final_step": None, "val_loss": nan, "val_perplexity": nan, "train_loss": nan, "elapsed_s": nan}
    series = read_log(log_path)
    last_val = series["val"][-1] if series["val"] else None
    last_train = series["train"][-1] if series["train"] else None
    points = [p for p in (last_val, last_train) if p is not None]
    return {"final_step": max((p[0] for p in points), default=None),
            "val_loss": last_val[2] if last_val else nan,
            "val_perplexity": math.exp(last_val[2]) if last_val else nan,
            "train_loss": last_train[2] if last_train else nan,
            "elapsed_s": max((p[1] for p in points), default=nan)}


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return "" if value is None else str(value)


def write_table(rows: list[dict], out_dir: Path) -> str:
    """Write results.md and results.csv (sorted by val loss, failures last); return the markdown."""
    rows = sorted(rows, key=lambda r: (r["status"] != "ok", math.isnan(r["val_loss"]), r["val_loss"]))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    markdown = "\n".join(lines) + "\n"
    (out_dir / "results.md").write_text(markdown)
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: r[c] for c in COLUMNS} for r in rows)
    return markdown


def run_one(command: list[str], point: dict[str, str], base: list[str], out_dir: Path) -> dict:
    name = run_name(point)
    log = out_dir / f"{name}.jsonl"
    argv = command + base + flags_for(point) + ["--log-file", str(log), "--checkpoint-dir", str(out_dir / name)]
    with open(out_dir / f"{name}.out", "w") as console:
        console.write("$ " + shlex.join(argv) + "\n")
        console.flush()
        rc = subprocess.run(argv, stdout=console, stderr=subprocess.STDOUT).returncode
    return {"run": name, "status": "ok" if rc == 0 else f"failed (exit {rc})", "log": log,
            **final_metrics(log)}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    base = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="scripts/sweep.py", description=__doc__.split("\n\n")[0],
                                     epilog="Flags after -- are passed to every run.")
    parser.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                        help="train flag (without dashes) and its values")
    parser.add_argument("--out-dir", required=True, help="directory for logs, checkpoints and the table")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (default 1: sequential)")
    parser.add_argument("--command", default=f"{shlex.quote(sys.executable)} -m jaxlm.train",
                        help="training command (default: this python -m jaxlm.train)")
    parser.add_argument("--plot", action="store_true", help="also write OUT/curves.png (needs matplotlib)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(own)
    try:
        points = expand_grid(parse_grid(args.grid))
    except ValueError as e:
        parser.error(str(e))
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    out_dir = Path(args.out_dir)
    command = shlex.split(args.command)
    if args.dry_run:
        for point in points:
            name = run_name(point)
            print(shlex.join(command + base + flags_for(point) + ["--log-file", str(out_dir / f"{name}.jsonl"),
                                                                  "--checkpoint-dir", str(out_dir / name)]))
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"sweep: {len(points)} run(s) into {out_dir}, {args.parallel} at a time", flush=True)
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        rows = list(pool.map(lambda p: run_one(command, p, base, out_dir), points))
    for row in rows:
        print(f"  {row['run']}: {row['status']}, val loss {_fmt(row['val_loss'])}", flush=True)
    print(write_table(rows, out_dir), end="")
    if args.plot:
        from jaxlm.plot import plot_runs
        logs = [r["log"] for r in rows if r["log"].exists() and (r["log"].stat().st_size > 0)]
        if logs:
            print(f"wrote {plot_runs(logs, out_dir / 'curves.png')}")
    return rows


if __name__ == "__main__":
    rows = main()
    sys.exit(1 if any(r["status"] != "ok" for r in rows) else 0)
