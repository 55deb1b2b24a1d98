"""The layer-scan trade-off: compile time at GPT-2-XL depth, step time at the TinyStories shape.

Default: trace + compile time of a forward+backward step at GPT-2-XL shape (48 layers). Nothing is
allocated: parameters are abstract (jax.eval_shape), so only tracing, lowering and XLA compilation are
timed. The peer is the same model with its layers unrolled in Python (what you get without lax.scan);
`--unrolled-layers` bounds how deep that peer goes, since it grows with depth.

`--step`: forward+backward step time at the handout's TinyStories shape with the scan rolled vs fully
unrolled by XLA (what model.FULL_UNROLL_MAX_LAYERS picks for shallow models), interleaved, medians of
wall and process CPU time (CPU time is steadier on a shared machine).

    python scripts/bench_compile.py [--preset gpt2-xl] [--batch-size 1] [--repeats 3] [--unrolled-layers 48]
    python scripts/bench_compile.py --step [--batch-size 8] [--repeats 9]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import jax
import jax.numpy as jnp

from jaxlm import accounting, model


def loss_fn(params, ids, config):
    logits = model.forward(params, ids[:, :-1], config)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), ids[:, 1:, None], axis=-1))


def unrolled_loss_fn(params, ids, config):
    """The same loss with a Python loop over layers instead of lax.scan (the peer)."""
    x = model.embed(params, ids[:, :-1], config)
    attn_fn = model.default_attn_fn(config, jnp.arange(ids.shape[1] - 1))
    for i in range(config.num_layers):
        x, _ = model.block(jax.tree_util.tree_map(lambda p: p[i], params["layers"]), x, config, attn_fn)
    logits = model.unembed(params, x, config)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), ids[:, 1:, None], axis=-1))


def time_compile(fn, config, batch_size):
    """(trace+lower seconds, XLA compile seconds) for jit(value_and_grad(fn)) with a fresh cache."""
    params = jax.eval_shape(lambda: model.init_params(config, jax.random.PRNGKey(0)))
    ids = jax.ShapeDtypeStruct((batch_size, config.context_length + 1), jnp.int32)
    step = jax.jit(jax.value_and_grad(fn), static_argnums=2)
    t0 = time.perf_counter()
    lowered = step.lower(params, ids, config)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def measure(fn, config, batch_size, repeats):
    runs = []
    for _ in range(repeats):
        jax.clear_caches()
        runs.append(time_compile(fn, config, batch_size))
    trace = statistics.median(r[0] for r in runs)
    comp = statistics.median(r[1] for r in runs)
    return {"trace_s": round(trace, 2), "compile_s": round(comp, 2), "total_s": round(trace + comp, 2)}


def bench_step(batch_size, repeats):
    """Median wall / CPU seconds of one compiled value_and_grad step, rolled vs unrolled layer scan."""
    from jaxlm.config import ModelConfig
    config = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16,
                         d_ff=1344)
    params = model.init_params(config, jax.random.PRNGKey(0))
    ids = jax.random.randint(jax.random.PRNGKey(1), (batch_size, config.context_length + 1), 0,
                             config.vocab_size)
    default = model.FULL_UNROLL_MAX_LAYERS
    steps = {}
    for name, limit in (("rolled", 0), ("unrolled", default)):
        model.FULL_UNROLL_MAX_LAYERS = limit  # read at trace time
        steps[name] = jax.jit(jax.value_and_grad(loss_fn), static_argnums=2).lower(params, ids, config).compile()
    model.FULL_UNROLL_MAX_LAYERS = default
    times = {name: ([], []) for name in steps}
    for step in steps.values():
        jax.block_until_ready(step(params, ids))
    for _ in range(repeats):
        for name, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(step(params, ids))
            times[name][0].append(time.perf_counter() - w0)
            times[name][1].append(time.process_time() - c0)
    result = {name: {"wall_ms": round(1000 * statistics.median(w), 1), "cpu_ms": round(1000 * statistics.median(c), 1)}
              for name, (w, c) in times.items()}
    result["cpu_ratio_rolled_over_unrolled"] = round(result["rolled"]["cpu_ms"] / result["unrolled"]["cpu_ms"], 3)
    return {"shape": "tinystories", "batch_size": batch_size, "repeats": repeats, **result}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="gpt2-xl", choices=list(accounting.PRESETS))
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--unrolled-layers", type=int, default=48, help="0 skips the unrolled peer")
    ap.add_argument("--step", action="store_true", help="time TinyStories-shape steps instead of compiles")
    a = ap.parse_args(argv)
    if a.step:
        print(json.dumps(bench_step(a.batch_size, a.repeats)))
        return
    config = accounting.preset(a.preset)
    result = {"preset": a.preset, "num_layers": config.num_layers, "batch_size": a.batch_size,
              "backend": jax.default_backend(), "repeats": a.repeats,
              "scan": measure(loss_fn, config, a.batch_size, a.repeats)}
    if a.unrolled_layers:
        peer = dataclasses.replace(config, num_layers=min(a.unrolled_layers, config.num_layers))
        result["unrolled"] = {"num_layers": peer.num_layers,
                              **measure(unrolled_loss_fn, peer, a.batch_size, max(1, a.repeats // 3))}
        result["ratio_unrolled_over_scan"] = round(result["unrolled"]["total_s"] / result["scan"]["total_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
