"""Decoding speed: jaxlm.generate vs HF transformers' generate() (KV cache) in one run, on this machine.

    .venv/bin/python scripts/bench_generate.py [--repeats 5] [--new-tokens 256]

Both sides: the CS336 TinyStories-sized model (vocab 10,000, d_model 512, 4 layers, 16 heads, d_ff 1344,
context 512, untied, float32) with random weights, batch 1, a 16-token prompt, 256 new tokens sampled
with temperature 0.8 and top-p 0.9 (no early stop). jaxlm is timed after compilation (compile time
reported separately); the peer (../shared/peers/torch_llama_generate.py, run as a subprocess each
repeat, interleaved with ours so both see the same machine load) times its own call after a warm-up.
Also times the floor of batch-1 decoding on this machine: a loop of only the weight mat-vecs of a
decode step (`matvec_bound`). Prints a markdown table of medians and the ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxlm import decode, model
from jaxlm.config import ModelConfig

PEER = Path(__file__).resolve().parents[2] / "shared" / "peers" / "torch_llama_generate.py"
CONFIG = ModelConfig(vocab_size=10_000, context_length=512, d_model=512, num_layers=4, num_heads=16,
                     d_ff=1344)


def jax_rates(params, prompt, new_tokens: int, temperature: float, top_p: float, seed: int):
    """A closure timing one generate call -> tokens/s, and the first call's compile+run seconds."""
    kwargs = dict(max_new_tokens=new_tokens, temperature=temperature, top_p=top_p)
    t0 = time.perf_counter()
    decode.generate(params, CONFIG, prompt, key=jax.random.key(seed), **kwargs).block_until_ready()
    first_s = time.perf_counter() - t0
    calls = iter(range(seed + 1, 1 << 30))

    def once() -> float:
        key = jax.random.key(next(calls))
        t = time.perf_counter()
        out = decode.generate(params, CONFIG, prompt, key=key, **kwargs).block_until_ready()
        dt = time.perf_counter() - t
        assert out.shape == (new_tokens,)
        return new_tokens / dt

    return once, first_s


def matvec_bound(params, new_tokens: int):
    """A closure timing the floor of batch-1 decoding -> tokens/s: a jitted loop doing only a decode step's
    weight mat-vecs (every layer's qkv, output, w1, w3, w2 and the lm_head; no attention, norms or
    sampling), i.e. reading every weight once per token as generate must."""
    @jax.jit
    def loop(params, x_D):
        layers = [jax.tree_util.tree_map(lambda p: p[i], params["layers"]) for i in range(CONFIG.num_layers)]

        def step(_, x_D):
            for lp in layers:
                attn, ffn = lp["attn"], lp["ffn"]
                x_D = x_D + attn["output_proj"] @ (attn["qkv_proj"] @ x_D)[:CONFIG.d_model]
                x_D = x_D + ffn["w2"] @ ((ffn["w1"] @ x_D) * (ffn["w3"] @ x_D))
            return x_D + 1e-6 * (params["lm_head"] @ x_D)[:CONFIG.d_model]  # keep the lm_head live

        return jax.lax.fori_loop(0, new_tokens, step, x_D)

    x_D = jax.numpy.ones((CONFIG.d_model,), jax.numpy.float32)
    loop(params, x_D).block_until_ready()

    def once() -> float:
        t = time.perf_counter()
        loop(params, x_D).block_until_ready()
        return new_tokens / (time.perf_counter() - t)

    return once


def peer_rate(peer: Path, new_tokens: int) -> float:
    proc = subprocess.run([sys.executable, str(peer), "--new-tokens", str(new_tokens)], capture_output=True,
                          text=True, check=True)
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["tokens_per_sec"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--peer", type=Path, default=PEER, help="torch_llama_generate.py")
    p.add_argument("--no-peer", action="store_true", help="time jaxlm only")
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = p.parse_args(argv)

    params = model.init_params(CONFIG, jax.random.key(0))
    prompt = np.random.default_rng(0).integers(0, CONFIG.vocab_size, 16).astype(np.int32)
    sampled, first_sampled = jax_rates(params, prompt, args.new_tokens, 0.8, 0.9, seed=0)
    greedy, first_greedy = jax_rates(params, prompt, args.new_tokens, 0.0, 1.0, seed=0)
    use_peer = not args.no_peer
    if use_peer and not args.peer.is_file():
        print(f"peer {args.peer} not found: timing jaxlm only", file=sys.stderr)
        use_peer = False

    bound = matvec_bound(params, args.new_tokens)

    runs = {"jaxlm top-p": [], "jaxlm greedy": [], "mat-vec bound": [], "hf": []}
    for r in range(args.repeats):
        runs["jaxlm top-p"].append(sampled())
        runs["jaxlm greedy"].append(greedy())
        runs["mat-vec bound"].append(bound())
        if use_peer:
            try:
                runs["hf"].append(peer_rate(args.peer, args.new_tokens))
            except subprocess.CalledProcessError as e:
                print(f"peer failed ({e.stderr.strip().splitlines()[-1:]}): timing jaxlm only", file=sys.stderr)
                use_peer = False
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in runs.items() if v),
              file=sys.stderr, flush=True)

    med = {k: statistics.median(v) for k, v in runs.items() if v}
    hf = med.get("hf")
    ratio = lambda k: f"{med[k] / hf:.1f}x" if hf else "n/a"
    print(f"\nDecoding, batch 1, {args.new_tokens} new tokens after a 16-token prompt, TinyStories-sized "
          f"model (vocab 10k, d_model 512, 4 layers, 16 heads, d_ff 1344), float32, this CPU; medians of "
          f"{args.repeats}.\n")
    print("| implementation | sampling | tokens/s | vs HF |")
    print("|---|---|---:|---:|")
    if hf:
        print(f"| HF transformers `generate()` (KV cache), torch {_torch_version()} | T=0.8, top-p 0.9 | "
              f"{hf:,.0f} | 1.0x |")
    print(f"| jaxlm `generate` (jitted KV cache) | T=0.8, top-p 0.9 | {med['jaxlm top-p']:,.0f} | "
          f"{ratio('jaxlm top-p')} |")
    print(f"| jaxlm `generate` (jitted KV cache) | greedy | {med['jaxlm greedy']:,.0f} | "
          f"{ratio('jaxlm greedy')} |")
    print(f"| weights-only mat-vec loop (the floor: every weight read once per token) | - | "
          f"{med['mat-vec bound']:,.0f} | {ratio('mat-vec bound')} |")
    print("\n" + ", ".join(f"{k} {1e3 / v:.2f} ms/token" for k, v in med.items()))
    print(f"\njaxlm first call (trace + compile + run): top-p {first_sampled:.1f}s, greedy {first_greedy:.1f}s")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": med, "first_call_s": {
            "top-p": first_sampled, "greedy": first_greedy}}, indent=2))
    return 0


def _torch_version() -> str:
    try:
        import importlib.metadata as md
        return md.version("torch")
    except Exception:  # noqa: BLE001 - informational only
        return "?"


if __name__ == "__main__":
    sys.exit(main())
