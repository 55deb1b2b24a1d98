"""scripts/: the handout recipe (run_recipe.sh via tinystories.sh) end to end on a small generated corpus
with every size turned down, and download_data.sh against a fake wget (no network here)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxlm.corpus import write_corpus

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def _run(cmd, env=None, cwd=REPO):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_tinystories_recipe_end_to_end_small(tmp_path):
    write_corpus(tmp_path / "train.txt", 100_000, seed=0)
    write_corpus(tmp_path / "valid.txt", 12_000, seed=1)
    out = tmp_path / "run"
    # sizes as flags and as environment variables (both are supported)
    env = {"PYTHON": sys.executable, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
           "D_MODEL": "32", "D_FF": "64", "NUM_LAYERS": "1", "NUM_HEADS": "2"}
    proc = _run([SCRIPTS / "tinystories.sh", "--cpu", "--train-text", tmp_path / "train.txt",
                 "--valid-text", tmp_path / "valid.txt", "--out", out, "--vocab-size", "300",
                 "--context-length", "32", "--batch-size", "8", "--tokens", str(40 * 8 * 32),
                 "--lr=1e-2", "--eval-batches", "2", "--workers", "1", "--num-samples", "2",
                 "--max-new-tokens", "16"], env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "40 steps x 8 x 32 tokens" in proc.stdout
    tok_files = json.loads((out / "tokenizer" / "vocab.json").read_text())
    assert len(tok_files) == 300
    for path in ("data/train.npy", "data/valid.npy", "loss.png", "samples.txt"):
        assert (out / path).is_file(), path
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts[-1] == "ckpt_00000040.ckpt"
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    vals = [r for r in records if "val_loss" in r]
    assert losses[-1] < math.log(300) - 1.5 and losses[-1] < losses[0]  # from ~ln(V) at the start
    assert vals and vals[-1]["step"] == 40
    samples = (out / "samples.txt").read_text()
    assert samples.count("Once upon a time") == 2 and "tokens/s" in samples


@pytest.mark.parametrize("args, message", [
    (["--dataset", "books"], "--dataset must be tinystories or owt"),
    (["--dataset", "owt", "--train-text", "/nonexistent.txt"], "/nonexistent.txt not found"),
    (["--dataset", "owt", "--colour", "red"], "unknown flag --colour"),
    (["--dataset", "owt", "--tokens", "10"], "less than one batch"),
])
def test_recipe_argument_errors(args, message):
    proc = _run([SCRIPTS / "run_recipe.sh", *args])
    assert proc.returncode == 2 and message in proc.stderr


FAKE_WGET = """#!/usr/bin/env bash
# fake wget: -q --show-progress -O OUT URL -> writes the URL (gzipped for .gz) into OUT
out=""; url=""
while [ $# -gt 0 ]; do case "$1" in -O) out=$2; shift 2;; -*) shift;; *) url=$1; shift;; esac; done
echo "$url" >> "$WGET_LOG"
if [[ "$url" == *.gz ]]; then printf '%s' "$url" | gzip > "$out"; else printf '%s' "$url" > "$out"; fi
"""


def test_download_data_fetches_the_cs336_files(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "wget").write_text(FAKE_WGET)
    (bin_dir / "wget").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DATA_DIR": str(tmp_path / "data"),
           "WGET_LOG": str(tmp_path / "wget.log")}
    proc = _run([SCRIPTS / "download_data.sh"], env)
    assert proc.returncode == 0, proc.stderr
    ts = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
    owt = "https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main/"
    expected = {"TinyStoriesV2-GPT4-train.txt": ts + "TinyStoriesV2-GPT4-train.txt",
                "TinyStoriesV2-GPT4-valid.txt": ts + "TinyStoriesV2-GPT4-valid.txt",
                "owt_train.txt": owt + "owt_train.txt.gz", "owt_valid.txt": owt + "owt_valid.txt.gz"}
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir()) == sorted(expected)  # gunzipped, no .gz or .part left
    for name, url in expected.items():
        assert (data / name).read_text() == url
    # a rerun skips what is there
    proc = _run([SCRIPTS / "download_data.sh", "tinystories"], env)
    assert proc.returncode == 0 and proc.stdout.count("have ") == 2
    assert len((tmp_path / "wget.log").read_text().splitlines()) == 4
    assert _run([SCRIPTS / "download_data.sh", "everything"], env).returncode == 2
