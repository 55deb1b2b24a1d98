"""The training script: exact resume (in-process, after SIGKILL), SIGINT, NaN guard, data checks,
1 vs 2 devices, 2 processes over gloo, learning, the JSONL log and the config file.

Every run shares one tiny model and one optimizer setup (cosine_steps fixed), so in-process runs reuse
one compiled step and a run of N steps is a prefix of the 400-step reference run. Subprocesses share a
persistent compilation cache.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxlm import train
from jaxlm.corpus import generate_story
from jaxlm.checkpoint import latest_checkpoint, load_checkpoint, read_extra

REPO = Path(__file__).resolve().parents[1]
MODEL = {"vocab_size": 256, "context_length": 16, "d_model": 32, "num_layers": 2, "num_heads": 2, "d_ff": 64}
OPTIM = {"batch_size": 8, "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 20, "cosine_steps": 400,
         "weight_decay": 0.1, "grad_clip": 1.0, "seed": 3}
STEPS = 400


def _text(n_chars: int, seed: int) -> str:
    """Stories from the project's embedded generator, cut to n_chars."""
    stories, n = [], 0
    while n < n_chars:
        stories.append(generate_story(len(stories), seed))
        n += len(stories[-1])
    return "".join(stories)[:n_chars]


def _write_tokens(path: Path, text: str) -> Path:
    np.save(path, np.frombuffer(text.encode(), dtype=np.uint8).astype(np.uint16))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "tokenizer.json").write_text("{}")  # stands in for a tokenizer: only its path is stored
    return {"train_data": str(_write_tokens(d / "train.npy", _text(60_000, 0))),
            "val_data": str(_write_tokens(d / "val.npy", _text(8_000, 1))),
            "tokenizer": str(d / "tokenizer.json")}


def _config(data, tmp: Path, **overrides) -> train.TrainConfig:
    values = {**MODEL, **OPTIM, **data, "max_steps": STEPS, "log_every": 1, "eval_every": 100,
              "eval_batches": 4, "checkpoint_dir": str(tmp / "ckpt"), "checkpoint_every": 25, "keep": 2,
              "log_file": str(tmp / "log.jsonl")}
    values.update(overrides)
    return train.TrainConfig(**values)


def _records(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _train_losses(path) -> dict[int, float]:
    """step -> train loss; for a resumed log, the record written last for each step."""
    return {r["step"]: r["train_loss"] for r in _records(path) if "train_loss" in r}


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted 400-step run every other run is compared with."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = _config(data, tmp)
    seen = []
    summary = train.run(cfg, callback=seen.append, quiet=True)
    return {"cfg": cfg, "summary": summary, "records": _records(cfg.log_file), "seen": seen,
            "losses": _train_losses(cfg.log_file)}


def _load(path):
    """(params, opt_state, iteration) of a checkpoint, using a freshly initialised state as template."""
    import jax

    from jaxlm.model import init_params
    from jaxlm.optim import adamw

    cfg = train.TrainConfig(**MODEL, **OPTIM, train_data="unused")
    params = init_params(cfg.model_config(), jax.random.key(0))
    return load_checkpoint(path, params, adamw(1.0).init(params))


def _assert_trees_equal(a, b):
    import jax

    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---- the log ---------------------------------------------------------------------------------------

def test_jsonl_records(reference):
    records, cfg = reference["records"], reference["cfg"]
    assert records[0].keys() >= {"compile_s"} and records[0]["compile_s"] > 0
    train_recs = [r for r in records if "train_loss" in r]
    eval_recs = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train_recs] == list(range(1, STEPS + 1))
    assert [r["step"] for r in eval_recs] == [100, 200, 300, 400]
    for r in train_recs:
        assert set(r) == {"step", "train_loss", "lr", "grad_norm", "tokens_per_sec", "mfu", "elapsed_s"}
        assert math.isfinite(r["train_loss"]) and r["grad_norm"] > 0 and r["tokens_per_sec"] > 0
        assert r["mfu"] is None  # CPU: no known peak
        # The lr of the update that produced step k is the handout's schedule at k - 1 (numpy formula).
        t, warm, top, low, cyc = r["step"] - 1, cfg.warmup_steps, cfg.lr, cfg.min_lr, cfg.cosine_steps
        cosine = low + (1 + np.cos(np.pi * (t - warm) / (cyc - warm))) / 2 * (top - low)
        expect = t / warm * top if t < warm else cosine
        assert r["lr"] == pytest.approx(expect, rel=1e-6)
    for r in eval_recs:
        assert set(r) == {"step", "val_loss", "val_perplexity", "elapsed_s"}
        assert r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"]), rel=1e-9)
    elapsed = [r["elapsed_s"] for r in records[1:]]
    assert elapsed == sorted(elapsed)
    assert reference["seen"] == records  # the callback saw exactly what was logged
    s = reference["summary"]
    assert s["steps"] == STEPS and s["final_train_loss"] == train_recs[-1]["train_loss"]
    assert s["final_val_loss"] == eval_recs[-1]["val_loss"] and not s["interrupted"]
    assert Path(s["checkpoint"]) == latest_checkpoint(cfg.checkpoint_dir)
    # keep=2: only the two newest survive.
    assert sorted(p.name for p in Path(cfg.checkpoint_dir).glob("*.ckpt")) == \
        ["ckpt_00000375.ckpt", "ckpt_00000400.ckpt"]
    extra = read_extra(s["checkpoint"])
    assert extra["model_config"] == cfg.model_config().to_dict()
    assert extra["train_config"] == cfg.to_dict()
    assert extra["data_order"] == {"seed": cfg.seed, "batch_size": cfg.batch_size, "next_step": STEPS}
    assert extra["tokenizer"] == os.path.abspath(cfg.tokenizer)


def test_learns(reference):
    """In 400 steps the tiny model beats a count-based bigram model of the training bytes (numpy)."""
    cfg = reference["cfg"]
    train_ids, val_ids = np.load(cfg.train_data).astype(np.int64), np.load(cfg.val_data).astype(np.int64)
    counts = np.full((256, 256), 0.01)
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1.0)
    probs = counts / counts.sum(axis=1, keepdims=True)
    bigram_nats = -np.mean(np.log(probs[val_ids[:-1], val_ids[1:]]))  # about 2.37 on this text
    final_val = reference["summary"]["final_val_loss"]
    assert final_val < bigram_nats - 0.1, (final_val, bigram_nats)


# ---- exact resume ----------------------------------------------------------------------------------

def test_resume_in_process_is_exact(data, reference, tmp_path):
    half = _config(data, tmp_path, max_steps=STEPS // 2)
    assert train.run(half, quiet=True)["steps"] == STEPS // 2
    summary = train.run(_config(data, tmp_path, resume=True), quiet=True)
    assert summary["steps"] == STEPS
    assert _train_losses(half.log_file) == reference["losses"]  # bit-identical floats
    _assert_trees_equal(_load(summary["checkpoint"]), _load(reference["summary"]["checkpoint"]))


def _cli(args, env_extra=None, **kw):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "jaxlm.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _flags(cfg: train.TrainConfig) -> list[str]:
    """CLI flags reproducing cfg (via a --config file would work too; flags test the parser)."""
    out = []
    for key, value in cfg.to_dict().items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """A persistent compilation cache shared by the subprocess runs."""
    return {"JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _signal_at_step(proc, log_file: str, step: int, sig, timeout=120):
    """Send `sig` once the log shows `step` (the run is mid-way), return the process's (rc, out, err)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(log_file) and any(r.get("step", 0) >= step for r in _safe_records(log_file)):
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _safe_records(path):
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return records


def test_sigkill_then_resume_matches_uninterrupted(data, reference, tmp_path, cache_env):
    cfg = _config(data, tmp_path)
    rc, _, err = _signal_at_step(_cli(_flags(cfg), cache_env), cfg.log_file, 110, signal.SIGKILL)
    assert rc == -signal.SIGKILL, err
    killed_at = max(_train_losses(cfg.log_file))
    assert killed_at < STEPS
    proc = _cli(_flags(cfg) + ["--resume"], cache_env)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["steps"] == STEPS
    first = _records(cfg.log_file)
    resumed_at = [r["start_step"] for r in first if "start_step" in r]
    assert resumed_at[0] == 0 and 0 < resumed_at[1] <= killed_at and resumed_at[1] % 25 == 0
    assert _train_losses(cfg.log_file) == reference["losses"]
    _assert_trees_equal(_load(latest_checkpoint(cfg.checkpoint_dir)),
                        _load(reference["summary"]["checkpoint"]))


def test_sigint_saves_and_exits_130(data, reference, tmp_path, cache_env):
    cfg = _config(data, tmp_path, checkpoint_every=1000)
    rc, out, err = _signal_at_step(_cli(_flags(cfg), cache_env), cfg.log_file, 60, signal.SIGINT)
    assert rc == 130, err
    assert "Traceback" not in err
    summary = json.loads(out.splitlines()[-1])
    stopped = summary["steps"]
    assert summary["interrupted"] and 60 <= stopped < STEPS
    path = latest_checkpoint(cfg.checkpoint_dir)
    assert path.name == f"ckpt_{stopped:08d}.ckpt"  # saved at the step it stopped, not a later one
    losses = _train_losses(cfg.log_file)
    assert max(losses) == stopped and all(losses[k] == reference["losses"][k] for k in losses)
    assert _load(path)[2] == stopped


# ---- failures --------------------------------------------------------------------------------------

def test_nan_guard_names_step_and_keeps_good_checkpoint(data, tmp_path, capsys):
    # lr 1e30 after 3 warmup steps blows the parameters up within a few steps.
    cfg = _config(data, tmp_path, lr=1e30, min_lr=1e29, warmup_steps=3, checkpoint_every=1, keep=50,
                  eval_every=0, max_steps=40)
    with pytest.raises(train.TrainingDiverged, match=r"non-finite .* at step (\d+)") as info:
        train.run(cfg, quiet=True)
    bad_step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    logged = _train_losses(cfg.log_file)
    assert max(logged, default=0) == bad_step - 1  # every step before it was finite and logged
    assert all(math.isfinite(v) for v in logged.values())
    newest = latest_checkpoint(cfg.checkpoint_dir)
    assert newest is not None and str(newest) in str(info.value)
    import jax

    params, opt_state, iteration = _load(newest)
    assert iteration < bad_step
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves((params, opt_state)))
    # The CLI: exit 1, one line naming the step, no traceback.
    assert train.main(_flags(cfg)) == 1
    err = capsys.readouterr().err
    assert f"at step {bad_step}" in err and "Traceback" not in err


def test_bad_token_ids_cli(data, tmp_path):
    bad = np.load(data["train_data"]).copy()
    bad[12345] = 300  # >= vocab_size 256
    np.save(tmp_path / "bad.npy", bad)
    proc = _cli(_flags(train.TrainConfig(**MODEL, train_data=str(tmp_path / "bad.npy"))))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "300" in err and "offset 12345" in err and "bad.npy" in err


@pytest.mark.parametrize("argv, message", [
    (["--max-steps", "10", "--warmup-steps", "0"], "--train-data is required"),
    (["--train-data", "x.npy", "--max-steps", "10"], "warmup_steps=100 exceeds cosine_steps=10"),
    (["--train-data", "/nonexistent/t.npy"], "/nonexistent/t.npy"),
    (["--train-data", "x.npy", "--d-model", "30", "--num-heads", "4"], "divisible"),
    (["--train-data", "x.npy", "--lr", "abc"], "--lr"),
    (["--train-data", "x.npy", "--resume"], "checkpoint_dir"),
    (["--train-data", "x.npy", "--bogus"], "--bogus"),
    (["--train-data", "x.npy", "--tokenizer", "/nonexistent/tok.json"], "--tokenizer"),
])
def test_cli_errors_exit_2_with_one_line(argv, message, capsys):
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxlm-train: error:") and message in err


def test_config_file_and_override(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"train_data": "a.npy", "d-model": 64, "lr": 0.01, "no_rope": True}))
    cfg = train.parse_args(["--config", str(path), "--lr", "0.002", "--num-layers", "2"])
    assert (cfg.train_data, cfg.d_model, cfg.lr, cfg.num_layers, cfg.no_rope) == ("a.npy", 64, 0.002, 2, True)
    assert cfg.max_steps == train.TrainConfig.max_steps  # untouched default
    assert cfg.model_config().remove_rope and cfg.model_config().d_model == 64
    path.write_text(json.dumps({"train_data": "a.npy", "learning_rate": 1, "zzz": 2}))
    with pytest.raises(train.ConfigError, match=r"\['learning_rate', 'zzz'\]"):
        train.parse_args(["--config", str(path)])
    path.write_text(json.dumps({"train_data": "a.npy", "max_steps": "100"}))
    with pytest.raises(train.ConfigError, match="max_steps must be int"):
        train.parse_args(["--config", str(path)])


def test_resume_refuses_other_model(data, reference, tmp_path):
    import shutil

    shutil.copytree(reference["cfg"].checkpoint_dir, tmp_path / "ckpt")
    cfg = _config(data, tmp_path, d_ff=96, resume=True)
    with pytest.raises(train.ConfigError, match=r"d_ff=64 \(now 96\)"):
        train.run(cfg, quiet=True)


# ---- data parallel ---------------------------------------------------------------------------------

def test_two_forced_cpu_devices_match_one(data, reference, tmp_path, cache_env):
    cfg = _config(data, tmp_path, max_steps=20, eval_every=0)
    proc = _cli(_flags(cfg), {**cache_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert _records(cfg.log_file)[0]["devices"] == 2
    two = _train_losses(cfg.log_file)
    assert sorted(two) == list(range(1, 21))
    np.testing.assert_allclose([two[k] for k in two], [reference["losses"][k] for k in two], rtol=1e-5)
    # A batch that does not split over the devices is refused up front.
    proc = _cli(_flags(_config(data, tmp_path, batch_size=7)),
                {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "batch size 7 is not divisible by the 2 devices" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_over_gloo_match_one(data, reference, tmp_path, cache_env):
    cfg = _config(data, tmp_path, max_steps=10, eval_every=0, checkpoint_dir=None)
    coordinator = f"127.0.0.1:{_free_port()}"
    multi = ["--coordinator", coordinator, "--num-processes", "2", "--process-id"]
    procs = [_cli(_flags(cfg) + multi + [str(i)], cache_env) for i in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    first = _records(cfg.log_file)[0]
    assert (first["devices"], first["processes"]) == (2, 2)
    losses = _train_losses(cfg.log_file)  # written by process 0 only
    assert sorted(losses) == list(range(1, 11))
    np.testing.assert_allclose([losses[k] for k in losses], [reference["losses"][k] for k in losses],
                               rtol=1e-5)


def test_mfu_with_given_peak(data, tmp_path):
    """mfu = FLOPs per step (jaxlm.accounting) * steps per second / peak, consistent with tokens/s."""
    from jaxlm.accounting import train_flops_per_step

    cfg = _config(data, tmp_path, max_steps=20, log_every=10, eval_every=0, checkpoint_dir=None,
                  peak_flops=1e12)
    train.run(cfg, quiet=True)
    flops = train_flops_per_step(cfg.model_config(), cfg.batch_size, cfg.context_length)
    for r in (r for r in _records(cfg.log_file) if "train_loss" in r):
        steps_per_s = r["tokens_per_sec"] / (cfg.batch_size * cfg.context_length)
        assert r["mfu"] == pytest.approx(flops * steps_per_s / 1e12, rel=1e-3)
