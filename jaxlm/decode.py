"""Autoregressive generation with a KV cache: one jitted function per shape, no Python per token.

`generate` validates its inputs on the host, then calls `_generate_jit` (compiled once per config,
batch, prompt length, max_new_tokens and sampling mode; temperature, top_p, eos_id and key are traced), which
  1. preallocates the KV cache: per layer a K and a V buffer (B*H, T_cache, d_head), L of each, with
     T_cache = prompt length + max_new_tokens - 1 <= context_length (every position this call feeds),
  2. prefills it with the whole prompt in one pass of the layers,
  3. samples the new tokens in one `lax.while_loop` that feeds one token per step and exits early once
     every row has produced `eos_id`.
The layers are `jaxlm.model.block` with a cached `attn_fn`, so norm placement and the ablations are shared
with `forward`; the attention math is `jaxlm.ops`. The oracle is a full `forward` over the growing sequence
(tests/test_decode.py). At batch 1 a step reads every weight once, so on CPU decoding runs at about the
memory bandwidth / parameter bytes (scripts/bench_generate.py); the caches are updated in place, never
copied (check the compiled while body for `copy(` when changing the cache code).
"""
from __future__ import annotations

import functools
import math
import operator
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlm import model, ops
from jaxlm.config import ModelConfig

__all__ = ["generate", "compile_generate", "sample_logits", "nucleus_threshold", "sample_from_weights",
           "argmax_first"]

# Number of times `_generate_jit` has been traced (tests check "compiled once per shape").
trace_count = 0


# ---- sampling --------------------------------------------------------------------------------------

def argmax_first(x_BV):
    """Index of the first maximum of each row (jnp.argmax's answer; several times faster on XLA:CPU)."""
    V = x_BV.shape[-1]
    is_max_BV = x_BV == jnp.max(x_BV, axis=-1, keepdims=True)
    return jnp.minimum(jnp.min(jnp.where(is_max_BV, jnp.arange(V), V), axis=-1), V - 1).astype(jnp.int32)


def nucleus_threshold(probs_BV, top_p):
    """Per row, the largest tau such that the tokens with probability >= tau hold mass >= top_p.

    {p >= tau} is the nucleus: the smallest set of most probable tokens reaching top_p (with ties at the
    boundary all kept), and never empty. Found exactly, without a sort (slow on CPU), by bisection on
    the float32 bit patterns, which order like the values for p >= 0 (31 steps of a masked sum).
    """
    bits_BV = jax.lax.bitcast_convert_type(probs_BV.astype(jnp.float32), jnp.int32)

    def step(_, bounds):
        lo_B, hi_B = bounds  # lo: reaches top_p (or 0 = keep all); answer in [lo, hi]
        mid_B = lo_B + (hi_B - lo_B + 1) // 2
        mass_B = jnp.sum(jnp.where(bits_BV >= mid_B[:, None], probs_BV, 0.0), axis=-1)
        ok_B = mass_B >= top_p
        return jnp.where(ok_B, mid_B, lo_B), jnp.where(ok_B, hi_B, mid_B - 1)

    lo_B = jnp.zeros(bits_BV.shape[:1], jnp.int32)
    lo_B, _ = jax.lax.fori_loop(0, 31, step, (lo_B, jnp.max(bits_BV, axis=-1)))
    return jax.lax.bitcast_convert_type(lo_B, jnp.float32)


def sample_from_weights(weights_BV, u_B):
    """Inverse-CDF sampling: per row, index j with probability weights[j] / sum(weights), given u ~ U[0, 1).

    One uniform per row instead of a Gumbel per vocabulary entry (which dominates on CPU)."""
    cdf_BV = jnp.cumsum(weights_BV, axis=-1)
    total_B = cdf_BV[:, -1]
    idx_B = jnp.sum(cdf_BV <= (u_B * total_B)[:, None], axis=-1)  # first j with cdf[j] > u * total
    last_B = jnp.sum(cdf_BV < total_B[:, None], axis=-1)  # the last token of positive weight (rounding)
    return jnp.minimum(idx_B, last_B).astype(jnp.int32)


def sample_logits(logits_BV, key, temperature, top_p, *, greedy: bool, nucleus: bool):
    """One token id per row: argmax when `greedy`, else a sample of softmax(logits / temperature),
    restricted to the top_p nucleus and renormalised when `nucleus`."""
    if greedy:
        return argmax_first(logits_BV)
    probs_BV = ops.softmax(logits_BV / temperature, axis=-1)
    if nucleus:
        probs_BV = jnp.where(probs_BV >= nucleus_threshold(probs_BV, top_p)[:, None], probs_BV, 0.0)
    return sample_from_weights(probs_BV, jax.random.uniform(key, probs_BV.shape[:1]))


# ---- the cached model ------------------------------------------------------------------------------

def _cached_attn_fn(config: ModelConfig, rope, pos, kv_cache):
    """An attn_fn for `model.block` that writes this step's K/V into the layer's cache (B*H, S, dh) at
    `pos` and attends over the cache, masking key positions > query position. Its aux is the new cache."""
    H = config.num_heads

    def attn_fn(attn_params, h_BTD):
        B, T, D = h_BTD.shape
        q_BHTd, k_BHTd, v_BHTd = ops.split_qkv_heads(ops.linear(h_BTD, attn_params["qkv_proj"]), H)
        positions_T = pos + jnp.arange(T)
        if rope is not None:
            q_BHTd = ops.apply_rope(q_BHTd, positions_T, *rope)
            k_BHTd = ops.apply_rope(k_BHTd, positions_T, *rope)
        # Caches are (B*H, S, dh), the attention dots' own batch layout: with (B, H, S, dh) XLA:CPU
        # reshapes the updated cache for the dots, which costs one or two cache copies per layer and step.
        q_NTd, k_NTd, v_NTd = (t.reshape(B * H, T, -1) for t in (q_BHTd, k_BHTd, v_BHTd))
        k_NSd, v_NSd = (jax.lax.dynamic_update_slice(c, new.astype(c.dtype), (0, pos, 0))
                        for c, new in zip(kv_cache, (k_NTd, v_NTd)))
        mask_TS = jnp.arange(k_NSd.shape[1])[None, :] <= positions_T[:, None]
        out_BHTd = ops.scaled_dot_product_attention(q_NTd, k_NSd, v_NSd, mask_TS).reshape(B, H, T, -1)
        out_BTD = jnp.moveaxis(out_BHTd, 1, 2).reshape(B, T, D)
        return ops.linear(out_BTD, attn_params["output_proj"]), (k_NSd, v_NSd)

    return attn_fn


def _model_step(params, layers, ids_BT, pos, kv_caches, config: ModelConfig, rope):
    """Run ids_BT (at positions pos..pos+T-1) through the model, extending the caches.

    Layers are unrolled with one cache buffer per layer, so every cache update is in place and attention
    reads it without a copy (a scan over stacked caches copies a layer's cache per step on CPU).
    Returns the float32 logits of the last position (B, V) and the new caches.
    """
    x_BTD = model.embed(params, ids_BT, config)
    new_caches = []
    for layer_params, kv_cache in zip(layers, kv_caches):
        attn_fn = _cached_attn_fn(config, rope, pos, kv_cache)
        x_BTD, kv_cache = model.block(layer_params, x_BTD, config, attn_fn)
        new_caches.append(kv_cache)
    return model.unembed(params, x_BTD[:, -1], config), tuple(new_caches)


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "greedy", "nucleus", "has_eos"))
def _generate_jit(params, prompt_BT, key, temperature, top_p, eos_id, *, config: ModelConfig,
                  max_new_tokens: int, greedy: bool, nucleus: bool, has_eos: bool):
    global trace_count
    trace_count += 1
    B, T = prompt_BT.shape
    N = max_new_tokens
    dtype = jnp.dtype(config.dtype)
    layers = [jax.tree_util.tree_map(lambda p: p[i].astype(dtype), params["layers"])
              for i in range(config.num_layers)]  # sliced once, outside the loop
    rope = model.rope_for(config)
    # The cache holds every position this call feeds through the model: the prompt and N - 1 new tokens.
    cache_NSd = jnp.zeros((B * config.num_heads, T + N - 1, config.head_dim), dtype)
    kv_caches = tuple((cache_NSd, cache_NSd) for _ in range(config.num_layers))

    logits_BV, kv_caches = _model_step(params, layers, prompt_BT, 0, kv_caches, config, rope)

    def emit(i, logits_BV, out_BN, done_B):
        """Sample token i of every row; rows already finished repeat eos."""
        tok_B = sample_logits(logits_BV, jax.random.fold_in(key, i), temperature, top_p,
                              greedy=greedy, nucleus=nucleus)
        if has_eos:
            tok_B = jnp.where(done_B, eos_id, tok_B)
            done_B = done_B | (tok_B == eos_id)
        return tok_B, out_BN.at[:, i].set(tok_B), done_B

    def cond(carry):
        i, _, _, _, done_B = carry
        return (i < N - 1) & ~jnp.all(done_B) if has_eos else i < N - 1

    def body(carry):
        i, logits_BV, kv_caches, out_BN, done_B = carry
        tok_B, out_BN, done_B = emit(i, logits_BV, out_BN, done_B)
        logits_BV, kv_caches = _model_step(params, layers, tok_B[:, None], T + i, kv_caches, config, rope)
        return i + 1, logits_BV, kv_caches, out_BN, done_B

    out_BN = jnp.full((B, N), eos_id if has_eos else 0, jnp.int32)
    carry = (jnp.int32(0), logits_BV, kv_caches, out_BN, jnp.zeros((B,), bool))
    i, logits_BV, _, out_BN, done_B = jax.lax.while_loop(cond, body, carry)
    # The last token needs no forward pass; after an early exit every row is done and this writes eos.
    _, out_BN, _ = emit(i, logits_BV, out_BN, done_B)
    return out_BN


# ---- the public entry point ------------------------------------------------------------------------

def _as_int(name, value, *, minimum):
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _as_float(name, value, lo, hi):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _check_params(params, config: ModelConfig):
    """ValueError listing missing, unknown or mis-shaped parameters for this config."""
    want = jax.tree_util.tree_flatten_with_path(model.param_shapes(config),
                                                is_leaf=lambda s: isinstance(s, tuple))[0]
    want = {jax.tree_util.keystr(p): s for p, s in want}
    try:
        have = {jax.tree_util.keystr(p): tuple(np.shape(a))
                for p, a in jax.tree_util.tree_flatten_with_path(params)[0]}
    except Exception as e:  # noqa: BLE001 - anything that is not a pytree of arrays
        raise ValueError(f"params is not a pytree of arrays: {e}") from None
    problems = [f"missing {k}" for k in sorted(set(want) - set(have))]
    problems += [f"unexpected {k}" for k in sorted(set(have) - set(want))]
    problems += [f"{k} has shape {have[k]}, expected {want[k]}"
                 for k in sorted(set(want) & set(have)) if have[k] != want[k]]
    if problems:
        raise ValueError("params do not fit the config: " + "; ".join(problems))


def _check_prompt(prompt_ids, config: ModelConfig) -> np.ndarray:
    """The prompt as an int32 (B, T) array, or ValueError saying what is wrong with it."""
    try:
        arr = np.asarray(prompt_ids)
    except ValueError:
        raise ValueError("prompts in a batch must all have the same length") from None
    if arr.dtype == object:
        raise ValueError("prompts in a batch must all have the same length")
    if arr.ndim not in (1, 2):
        raise ValueError(f"prompt_ids must be 1-D (T,) or 2-D (B, T), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"empty prompt (shape {arr.shape}): generation needs at least one token")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"prompt_ids must be integer token ids, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= config.vocab_size)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"prompt token id {int(arr[where])} at index {where} is outside the "
                         f"vocabulary [0, {config.vocab_size})")
    return arr.reshape(-1, arr.shape[-1]).astype(np.int32)


def _prepare(params, config, prompt_ids, *, max_new_tokens, temperature, top_p, eos_id, key, truncate):
    """Validate generate's inputs: (positional args, static kwargs) of `_generate_jit`, or ValueError."""
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a jaxlm.ModelConfig, got {type(config).__name__}")
    max_new_tokens = _as_int("max_new_tokens", max_new_tokens, minimum=1)
    temperature = _as_float("temperature", temperature, 0.0, math.inf)
    top_p = _as_float("top_p", top_p, 0.0, 1.0)
    has_eos = eos_id is not None
    eos_id = _as_int("eos_id", eos_id, minimum=0) if has_eos else 0
    if eos_id >= config.vocab_size:
        raise ValueError(f"eos_id {eos_id} is outside the vocabulary [0, {config.vocab_size})")
    prompt_BT = _check_prompt(prompt_ids, config)
    T, ctx = prompt_BT.shape[1], config.context_length
    if T + max_new_tokens > ctx:
        if not truncate or max_new_tokens >= ctx:
            raise ValueError(
                f"prompt length {T} + max_new_tokens {max_new_tokens} exceeds context_length {ctx}"
                + ("" if max_new_tokens >= ctx else " (pass truncate=True to keep the prompt's last "
                                                    f"{ctx - max_new_tokens} tokens)"))
        prompt_BT = prompt_BT[:, T - (ctx - max_new_tokens):]
    _check_params(params, config)
    greedy = temperature == 0.0
    if greedy:
        key = jax.random.key(0)  # unused
    elif key is None:
        raise ValueError("sampling (temperature > 0) needs a PRNG key: key=jax.random.key(seed)")
    elif not (isinstance(key, jax.Array)
              and ((jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ())
                   or (key.dtype == jnp.uint32 and key.shape == (2,)))):
        raise ValueError(f"key must be a single jax PRNG key (jax.random.key(seed)), got {key!r}")
    args = (params, jnp.asarray(prompt_BT), key, jnp.float32(max(temperature, 1e-30)), jnp.float32(top_p),
            jnp.int32(eos_id))
    static = dict(config=config, max_new_tokens=max_new_tokens, greedy=greedy, nucleus=top_p < 1.0,
                  has_eos=has_eos)
    return args, static


def generate(params, config: ModelConfig, prompt_ids, *, max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, eos_id: int | None = None, key=None, truncate: bool = False):
    """Sample `max_new_tokens` continuation ids of `prompt_ids` and return only the new ids.

    prompt_ids: (T,) -> result (max_new_tokens,); (B, T) equal-length prompts -> (B, max_new_tokens).
    temperature 0 is greedy (no key needed); otherwise logits / temperature, nucleus sampling with top_p
    (1 = the full distribution) and `key` (a jax PRNG key). After `eos_id` (kept) a row repeats eos_id.
    T + max_new_tokens must fit in config.context_length, or with truncate=True the prompt keeps its
    last context_length - max_new_tokens tokens. Compiled once per (config, B, T, max_new_tokens, mode).
    Raises ValueError for bad inputs.
    """
    args, static = _prepare(params, config, prompt_ids, max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, eos_id=eos_id, key=key, truncate=truncate)
    out_BN = _generate_jit(*args, **static)
    return out_BN[0] if np.ndim(prompt_ids) == 1 else out_BN


def compile_generate(params, config: ModelConfig, prompt_ids, **kwargs):
    """Ahead-of-time compile a `generate` call: returns (run, compile_seconds) where run() performs the
    generation (same result as generate(params, config, prompt_ids, **kwargs)) without compiling.
    For timing decoding apart from compilation (the CLI and the benchmark report both)."""
    kwargs = {"temperature": 1.0, "top_p": 1.0, "eos_id": None, "key": None, "truncate": False, **kwargs}
    args, static = _prepare(params, config, prompt_ids, **kwargs)
    t0 = time.perf_counter()
    compiled = _generate_jit.lower(*args, **static).compile()
    compile_s = time.perf_counter() - t0
    squeeze = np.ndim(prompt_ids) == 1
    return (lambda: compiled(*args)[0] if squeeze else compiled(*args)), compile_s
