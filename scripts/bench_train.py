"""Training-step speed: jaxlm's jitted step vs HF transformers' Llama (torch eager and torch.compile).

The handout's TinyStories model (vocab 10,000, context 256, d_model 512, 4 layers, 16 heads, d_ff 1344)
at batch 8, measured in one run on this machine: tokens/s (median step time), MFU where the accelerator's
peak is known, and compile time. The torch peers run as subprocesses of ../shared/peers/torch_llama_train.py
(pip install -e '.[bench]'). Prints a markdown table and, last, one JSON line.

    python scripts/bench_train.py [--steps 10] [--repeats 2] [--no-peers]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEER = REPO.parent / "shared" / "peers" / "torch_llama_train.py"
SHAPE = {"vocab_size": 10_000, "context_length": 256, "d_model": 512, "num_layers": 4, "num_heads": 16,
         "d_ff": 1344}


def bench_jax(batch_size: int, steps: int, dtype: str) -> dict:
    """Median synchronised step time of the training script's own compiled step, on random tokens."""
    import jax
    import numpy as np

    from jaxlm import parallel
    from jaxlm.accounting import train_flops_per_step
    from jaxlm.data import batch_for_step
    from jaxlm.train import TrainConfig, compiled_steps

    cfg = TrainConfig(**SHAPE, batch_size=batch_size, dtype=dtype, train_data="random", lr=1e-3,
                      min_lr=1e-4, warmup_steps=10, max_steps=1000, weight_decay=0.1, beta1=0.9, beta2=0.95)
    model_cfg = cfg.model_config()
    mesh = parallel.data_mesh()
    optim = (cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.decay_steps, cfg.beta1, cfg.beta2, cfg.eps,
             cfg.weight_decay, cfg.grad_clip)
    fns = compiled_steps(model_cfg, batch_size, optim, mesh)
    params, opt_state = fns.init(jax.random.key(0))
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=1_000_000, dtype=np.uint16)

    def batch(s):
        x, y = batch_for_step(tokens, batch_size, cfg.context_length, 0, s)
        return parallel.shard_batch(x, mesh), parallel.shard_batch(y, mesh)

    times = []
    for s in range(steps + 2):  # two warm-up steps, like the peer
        x, y = batch(s)
        t0 = time.perf_counter()
        params, opt_state, loss, _ = fns.train(params, opt_state, x, y)
        loss.block_until_ready()
        if s >= 2:
            times.append(time.perf_counter() - t0)
    # The training loop's own pattern: dispatch ahead, sync once at the end (batch prep overlaps).
    t0 = time.perf_counter()
    x, y = batch(0)
    for s in range(steps):
        params, opt_state, loss, _ = fns.train(params, opt_state, x, y)
        x, y = batch(s + 1)
    loss.block_until_ready()
    loop_dt = (time.perf_counter() - t0) / steps
    dt = statistics.median(times)
    tokens_per_step = batch_size * cfg.context_length
    peak = parallel.peak_flops_per_device(jax.devices()[0])
    flops = train_flops_per_step(model_cfg, batch_size, cfg.context_length)
    return {"name": f"jaxlm (jit, {dtype})", "tokens_per_sec": tokens_per_step / dt,
            "loop_tokens_per_sec": tokens_per_step / loop_dt,
            "mfu": flops / dt / (peak * mesh.size) if peak else None, "compile_s": fns.compile_s,
            "device": jax.devices()[0].device_kind, "devices": mesh.size, "step_times": times,
            "final_loss": float(loss)}


def bench_peer(batch_size: int, steps: int, compile_: bool, peer: Path) -> dict:
    cmd = [sys.executable, str(peer), "--batch-size", str(batch_size), "--steps", str(steps)]
    cmd += ["--compile"] if compile_ else []
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"name": "torch" + (" compile" if compile_ else " eager"), "error": tail[0]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"name": "HF Llama, torch " + ("compile" if compile_ else "eager"),
            "tokens_per_sec": result["tokens_per_sec"], "threads": result["threads"], "wall_s": wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median taken)")
    p.add_argument("--repeats", type=int, default=3,
                   help="jaxlm measurements, interleaved with the peers (at least peers + 1)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--peer", type=Path, default=PEER)
    p.add_argument("--no-peers", action="store_true")
    args = p.parse_args(argv)

    if not args.no_peers and not args.peer.exists():
        p.error(f"peer script {args.peer} not found (use --peer or --no-peers)")
    # Interleaved (jax, eager, jax, compile, jax, ...) so that load from other processes on a shared
    # machine hits every system alike; the load average is recorded with each measurement.
    runs, peers, timeline = [], [], []
    todo = [False, True] if not args.no_peers else []
    for i in range(max(args.repeats, len(todo) + 1)):
        runs.append(bench_jax(args.batch_size, args.steps, args.dtype))
        timeline.append(f"jaxlm {runs[-1]['tokens_per_sec']:,.0f} tok/s (load {os.getloadavg()[0]:.1f})")
        if i < len(todo):
            peers.append(bench_peer(args.batch_size, args.steps, todo[i], args.peer))
            timeline.append(f"{peers[-1]['name']} {peers[-1].get('tokens_per_sec', 0):,.0f} tok/s "
                            f"(load {os.getloadavg()[0]:.1f})")
    step_times = [t for r in runs for t in r["step_times"]]
    tokens_per_step = args.batch_size * SHAPE["context_length"]
    jx = {**runs[0], "tokens_per_sec": tokens_per_step / statistics.median(step_times),
          "loop_tokens_per_sec": statistics.median(r["loop_tokens_per_sec"] for r in runs)}
    if jx["mfu"] is not None:
        jx["mfu"] = statistics.median(r["mfu"] for r in runs)
    best = max((q["tokens_per_sec"] for q in peers if "tokens_per_sec" in q), default=None)

    print(f"\nTraining step, TinyStories shape, batch {args.batch_size} x {SHAPE['context_length']} tokens, "
          f"{jx['devices']} x {jx['device']}; jaxlm: median of {len(step_times)} steps over {len(runs)} runs.\n"
          f"In order (1-min load average after each): {'; '.join(timeline)}\n")
    print("| system | tokens/s | MFU | compile (s) | vs best torch |")
    print("|---|---:|---:|---:|---:|")
    mfu = f"{jx['mfu']:.1%}" if jx["mfu"] is not None else "n/a (CPU)"
    ratio = f"{jx['tokens_per_sec'] / best:.2f}x" if best else "-"
    print(f"| {jx['name']} | {jx['tokens_per_sec']:,.0f} | {mfu} | {jx['compile_s']:.1f} | {ratio} |")
    ratio = f"{jx['loop_tokens_per_sec'] / best:.2f}x" if best else "-"
    print(f"| {jx['name']}, async loop | {jx['loop_tokens_per_sec']:,.0f} | | | {ratio} |")
    for q in peers:
        if "error" in q:
            print(f"| {q['name']} | failed: {q['error']} | | | |")
        else:
            print(f"| {q['name']} ({q['threads']} threads) | {q['tokens_per_sec']:,.0f} | | "
                  f"| {q['tokens_per_sec'] / best:.2f}x |")
    summary = {k: v for k, v in jx.items() if k != "step_times"}
    summary["per_run_tokens_per_sec"] = [r["tokens_per_sec"] for r in runs]
    print(json.dumps({"jaxlm": summary, "peers": peers, "ratio_vs_best_torch":
                      jx["tokens_per_sec"] / best if best else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
