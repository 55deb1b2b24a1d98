"""Looking at runs: jaxlm.plot draws the JSONL logs; scripts/sweep.py runs a grid and tabulates it."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from jaxlm import plot

REPO = Path(__file__).resolve().parents[1]


def _write_log(path, lr, steps=5, resumed_at=None):
    records = [{"compile_s": 1.0, "devices": 1}]
    for s in range(1, steps + 1):
        loss = 5.0 / (1 + lr * s)
        records.append({"step": s, "train_loss": loss, "lr": lr, "grad_norm": 1.0, "tokens_per_sec": 100.0,
                        "mfu": None, "elapsed_s": 0.5 * s})
        if s % 2 == 0:
            records.append({"step": s, "val_loss": loss + 0.1, "val_perplexity": math.exp(loss + 0.1),
                            "elapsed_s": 0.5 * s})
    if resumed_at is not None:  # a resumed run appends the steps after its checkpoint again
        records.append({"step": resumed_at, "train_loss": 0.123, "lr": lr, "grad_norm": 1.0,
                        "tokens_per_sec": 100.0, "mfu": None, "elapsed_s": 9.0})
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_read_log_series_and_resume(tmp_path):
    series = plot.read_log(_write_log(tmp_path / "a.jsonl", 0.5, resumed_at=3))
    assert [p[0] for p in series["train"]] == [1, 2, 3, 4, 5]
    assert series["train"][2] == (3, 9.0, 0.123)  # the later record of a repeated step wins
    assert [p[0] for p in series["val"]] == [2, 4]
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "train_loss": 2}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON line"):
        plot.read_log(tmp_path / "bad.jsonl")


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    logs = [_write_log(tmp_path / f"lr{lr}.jsonl", lr) for lr in (0.1, 1.0)]
    out = plot.plot_runs(logs, tmp_path / "figs" / "curves.png", title="lr sweep")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    (tmp_path / "empty.jsonl").write_text('{"compile_s": 1.0}\n')
    with pytest.raises(ValueError, match="no train_loss/val_loss records in: empty"):
        plot.plot_runs([tmp_path / "empty.jsonl"], tmp_path / "x.png")
    plot.main([str(p) for p in logs] + ["--out", str(tmp_path / "cli.png")])
    assert (tmp_path / "cli.png").exists()


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(SystemExit, match=r"pip install 'jaxlm\[plot\]'"):
        plot.plot_runs([_write_log(tmp_path / "a.jsonl", 0.1)], tmp_path / "c.png")


FAKE_TRAIN = """
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float); p.add_argument("--batch-size", type=int)
p.add_argument("--max-steps", type=int); p.add_argument("--no-rope", action="store_true")
p.add_argument("--log-file"); p.add_argument("--checkpoint-dir")
a = p.parse_args()
if a.lr > 0.5:
    raise SystemExit(3)  # a diverged run
loss = a.lr * 10 + a.batch_size / 100 + (1 if a.no_rope else 0)
with open(a.log_file, "w") as f:
    for s in range(1, a.max_steps + 1):
        f.write(json.dumps({"step": s, "train_loss": loss + 1 / s, "elapsed_s": s * 0.1}) + "\\n")
    f.write(json.dumps({"step": a.max_steps, "val_loss": loss, "val_perplexity": 0, "elapsed_s": 9}) + "\\n")
"""


def _sweep_module():
    spec = importlib.util.spec_from_file_location("sweep", REPO / "scripts" / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_runs_the_grid_and_tabulates(tmp_path):
    sweep = _sweep_module()
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    out = tmp_path / "sweep"
    rows = sweep.main(["--grid", "lr=0.1,0.01,0.9", "batch_size=16,32", "--out-dir", str(out), "--parallel", "2",
                       "--command", f"{sys.executable} {fake}", "--", "--max-steps", "3"])
    assert len(rows) == 6
    by_name = {r["run"]: r for r in rows}
    ok = by_name["lr=0.01_batch_size=16"]
    assert ok["status"] == "ok" and ok["final_step"] == 3
    assert math.isclose(ok["val_loss"], 0.01 * 10 + 0.16) and math.isclose(ok["train_loss"], 0.26 + 1 / 3)
    assert by_name["lr=0.9_batch_size=32"]["status"] == "failed (exit 3)"
    table = (out / "results.md").read_text().splitlines()
    assert table[2].startswith("| lr=0.01_batch_size=16 | ok | 3 | 0.2600 |")  # best run first
    assert table[-1].startswith("| lr=0.9_") and "failed" in table[-1]
    assert (out / "results.csv").read_text().count("\n") == 7
    assert "--checkpoint-dir" in (out / "lr=0.1_batch_size=16.out").read_text()
    # Boolean grid values toggle a flag.
    rows = sweep.main(["--grid", "no_rope=false,true", "--out-dir", str(tmp_path / "abl"), "--command",
                       f"{sys.executable} {fake}", "--", "--max-steps", "1", "--lr", "0.1", "--batch-size", "8"])
    assert [round(r["val_loss"], 6) for r in rows] == [1.08, 2.08]


def test_sweep_rejects_bad_grid():
    sweep = _sweep_module()
    for bad in (["lr"], ["lr="], ["lr=1", "lr=2"]):
        with pytest.raises(SystemExit):
            sweep.main(["--grid", *bad, "--out-dir", "unused", "--dry-run"])
