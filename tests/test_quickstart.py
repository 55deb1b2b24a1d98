"""`make quickstart` (jaxlm.quickstart) with every size turned down: all stages run and write their files."""
import json
import math

from jaxlm import quickstart

TINY = ["--train-bytes", "120000", "--val-bytes", "15000", "--vocab-size", "300", "--context-length", "32",
        "--d-model", "32", "--num-layers", "1", "--num-heads", "2", "--d-ff", "64", "--batch-size", "8",
        "--steps", "30", "--warmup-steps", "3", "--lr", "1e-2", "--eval-every", "15", "--eval-batches", "2",
        "--max-new-tokens", "24", "--workers", "1"]


def test_quickstart_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "qs"
    assert quickstart.main(["--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    for n in range(1, 7):
        assert f"== {n}/6" in printed
    for path in ("corpus/train.txt", "corpus/valid.txt", "tokenizer/vocab.json", "tokenizer/merges.txt",
                 "data/train.npy", "data/valid.npy", "quickstart.jsonl", "loss.png", "checkpoints/ckpt_00000030.ckpt"):
        assert (out / path).is_file(), path
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sample"].startswith("Once upon a time") and summary["sample"] in printed
    assert "tokens/s" in printed and "val loss" in printed
    assert summary["val_loss"] < math.log(300) - 1.0  # learned something in 30 steps
    evals = [json.loads(line) for line in (out / "quickstart.jsonl").read_text().splitlines() if "val_loss" in line]
    assert [r["step"] for r in evals] == [15, 30]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quickstart_rerun_starts_fresh(tmp_path, capsys):
    """A second run into the same directory replaces the first run's files (no stale checkpoints)."""
    out = tmp_path / "qs"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "ckpt_00009999.ckpt").write_bytes(b"stale")
    assert quickstart.main(["--out", str(out), *TINY]) == 0  # same sizes: the compiled steps are reused
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt_00000030.ckpt"]
    capsys.readouterr()
