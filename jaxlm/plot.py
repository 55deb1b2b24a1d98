"""Loss curves of one or more training runs from their JSONL logs.

    python -m jaxlm.plot runs/lr1e-3.jsonl runs/lr3e-3.jsonl --out curves.png

Two panels: loss against steps and against wall-clock seconds; one colour per run (labelled by file
stem), training loss as a thin line, validation loss as a thick line with markers. matplotlib is an
optional dependency (`pip install 'jaxlm[plot]'`), imported only when plotting.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_log(path) -> dict[str, list[tuple[float, float, float]]]:
    """{"train": [(step, elapsed_s, loss)], "val": [...]} from a training JSONL log.

    Records without a loss (compile/info lines) are skipped; a resumed run's repeated steps keep the last
    record for each step (the one from the run that went on).
    """
    series = {"train": {}, "val": {}}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({e})") from None
            for kind, key in (("train", "train_loss"), ("val", "val_loss")):
                if key in record:
                    if "step" not in record:
                        raise ValueError(f"{path}:{lineno}: a {key} record without a 'step'")
                    series[kind][record["step"]] = (record["step"], record.get("elapsed_s", float("nan")),
                                                    record[key])
    return {kind: sorted(points.values()) for kind, points in series.items()}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("jaxlm.plot needs matplotlib: pip install 'jaxlm[plot]' (or pip install "
                         "matplotlib)") from None
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    return plt


def plot_runs(paths, out, *, title: str | None = None, logy: bool = False) -> Path:
    """Write a two-panel PNG (or any matplotlib format by suffix) of the runs' losses; return its path."""
    if not paths:
        raise ValueError("plot_runs needs at least one JSONL log")
    runs = [(Path(p).stem, read_log(p)) for p in paths]
    empty = [name for name, s in runs if not s["train"] and not s["val"]]
    if empty:
        raise ValueError(f"no train_loss/val_loss records in: {', '.join(empty)}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, (name, series) in enumerate(runs):
        colour = f"C{i % 10}"
        for ax, x_index in zip(axes, (0, 1)):
            if series["train"]:
                ax.plot([p[x_index] for p in series["train"]], [p[2] for p in series["train"]], color=colour,
                        linewidth=0.8, alpha=0.6, label=f"{name} train")
            if series["val"]:
                ax.plot([p[x_index] for p in series["val"]], [p[2] for p in series["val"]], color=colour,
                        linewidth=2.0, marker="o", markersize=3, label=f"{name} val")
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("wall-clock (s)")
    axes[0].set_ylabel("loss (nats/token)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if logy:
            ax.set_yscale("log")
    axes[1].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jaxlm.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", help="JSONL logs written by jaxlm.train --log-file")
    parser.add_argument("--out", default="curves.png", help="output image (default: curves.png)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--logy", action="store_true", help="log-scale loss axis")
    args = parser.parse_args(argv)
    try:
        out = plot_runs(args.logs, args.out, title=args.title, logy=args.logy)
    except (OSError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
