"""The Transformer LM: parameters as a plain pytree, a pure `forward`, and a Flax NNX view of the same.

The functional API is the source of truth: `init_params(config, key)` returns a nested dict of float32
arrays with the layers stacked on a leading axis L, and `forward(params, ids, config)` runs them with one
`jax.lax.scan` (compile time independent of depth). Layout (linear weights `(d_out, d_in)` as in CS336):

    {"token_embeddings": (V, D),
     "layers": {"ln1": (L, D), "attn": {"qkv_proj": (L, 3D, D), "output_proj": (L, D, D)},
                "ln2": (L, D), "ffn": {"w1": (L, F, D), "w2": (L, D, F), "w3": (L, F, D)}},
     "ln_final": (D,), "lm_head": (V, D)}

`w3` is absent for ffn_type="silu"; ln1, ln2 and ln_final are absent when remove_rmsnorm.
`qkv_proj` rows are CS336's [q_proj; k_proj; v_proj].

`TransformerLM` is an NNX module whose attributes are named like CS336's state dict
(`layers[i].attn.q_proj.weight`, ...). It holds no math: `__call__` stacks its weights into the pytree
above (`to_params()`) and calls `forward`; `TransformerLM.from_params(params, config)` goes the other way.
"""
from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxlm import ops
from jaxlm.config import ModelConfig

__all__ = ["ModelConfig", "init_params", "forward", "block", "ffn", "rope_for", "default_attn_fn",
           "TransformerLM"]


# ---- parameters ------------------------------------------------------------------------------------

def param_shapes(config: ModelConfig) -> dict:
    """The params pytree's structure with shape tuples as leaves."""
    V, D, L, F = config.vocab_size, config.d_model, config.num_layers, config.d_ff
    ffn_shapes = {"w1": (L, F, D), "w2": (L, D, F)}
    if config.ffn_type == "swiglu":
        ffn_shapes["w3"] = (L, F, D)
    layers = {"attn": {"qkv_proj": (L, 3 * D, D), "output_proj": (L, D, D)}, "ffn": ffn_shapes}
    shapes = {"token_embeddings": (V, D), "layers": layers, "lm_head": (V, D)}
    if not config.remove_rmsnorm:
        layers["ln1"] = layers["ln2"] = (L, D)
        shapes["ln_final"] = (D,)
    return shapes


def _init_std(path: tuple[str, ...], shape: tuple[int, ...]) -> float | None:
    """The handout's init scale for one leaf: sigma of the truncated normal, or None for a unit gain."""
    name = path[-1]
    if name.startswith("ln"):
        return None  # RMSNorm gains start at 1
    if name == "token_embeddings":
        return 1.0  # N(0, 1) truncated at +-3
    d_out, d_in = shape[-2:]
    if name == "qkv_proj":
        d_out //= 3  # three (D, D) projections stacked, each initialised as its own linear
    return math.sqrt(2.0 / (d_in + d_out))  # variance 2/(d_in + d_out), truncated at +-3 sigma


@functools.partial(jax.jit, static_argnums=0)
def init_params(config: ModelConfig, key) -> dict:
    """Fresh float32 parameters as the handout initialises them.

    All weights come from ONE truncated-normal draw that is split and scaled per leaf: XLA compiles the
    sampler once instead of once per leaf (seconds per leaf on CPU).
    """
    paths_shapes, treedef = jax.tree_util.tree_flatten_with_path(
        param_shapes(config), is_leaf=lambda s: isinstance(s, tuple))
    stds = [_init_std(tuple(p.key for p in path), shape) for path, shape in paths_shapes]
    sizes = [math.prod(shape) if std is not None else 0 for (_, shape), std in zip(paths_shapes, stds)]
    total = sum(sizes)
    chunk = max(1, min(total, 1 << 26))  # bounded draws keep the sampler's counters within 32 bits
    keys = jax.random.split(key, -(-total // chunk))
    z = jax.lax.map(lambda k: jax.random.truncated_normal(k, -3.0, 3.0, (chunk,), jnp.float32), keys)
    z = z.reshape(-1)
    leaves, offset = [], 0
    for (_, shape), std, size in zip(paths_shapes, stds, sizes):
        if std is None:
            leaves.append(jnp.ones(shape, jnp.float32))
        else:
            leaves.append(std * z[offset:offset + size].reshape(shape))
        offset += size
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ---- forward ---------------------------------------------------------------------------------------

def rope_for(config: ModelConfig):
    """RoPE (cos, sin) tables for the config's head dim and context length, or None for NoPE."""
    if config.remove_rope:
        return None
    return ops.rope_tables(config.head_dim, config.rope_theta, config.context_length)


def ffn(ffn_params: dict, h, config: ModelConfig):
    """The position-wise FFN selected by config.ffn_type."""
    if config.ffn_type == "swiglu":
        return ops.swiglu(h, ffn_params["w1"], ffn_params["w2"], ffn_params["w3"])
    return ops.silu_ffn(h, ffn_params["w1"], ffn_params["w2"])


def block(layer_params: dict, x_BTD, config: ModelConfig, attn_fn):
    """One Transformer block -> (y_BTD, aux); holds the norm placement and ablation logic once.

    attn_fn(attn_params, h_BTD) -> (out_BTD, aux) is the attention sublayer, projections included (the
    default is `default_attn_fn`; decoding passes a KV-cached one). Pre-norm (default):
    h = x + attn(norm1(x)), y = h + ffn(norm2(h)); use_post_norm: z = norm1(x + attn(x)),
    y = norm2(z + ffn(z)); remove_rmsnorm drops every norm (ModelConfig rejects it together with use_post_norm).
    """
    lp = layer_params
    if config.remove_rmsnorm:
        a, aux = attn_fn(lp["attn"], x_BTD)
        h = x_BTD + a
        return h + ffn(lp["ffn"], h, config), aux
    norm1 = lambda t: ops.rmsnorm(t, lp["ln1"], config.eps)
    norm2 = lambda t: ops.rmsnorm(t, lp["ln2"], config.eps)
    if config.use_post_norm:
        a, aux = attn_fn(lp["attn"], x_BTD)
        z = norm1(x_BTD + a)
        return norm2(z + ffn(lp["ffn"], z, config)), aux
    a, aux = attn_fn(lp["attn"], norm1(x_BTD))
    h = x_BTD + a
    return h + ffn(lp["ffn"], norm2(h), config), aux


def default_attn_fn(config: ModelConfig, positions):
    """Causal MHA with RoPE at `positions` (an attn_fn for `block`; aux is None)."""
    rope = rope_for(config)

    def attn_fn(attn_params, h_BTD):
        out = ops.multihead_self_attention(h_BTD, attn_params["qkv_proj"], attn_params["output_proj"],
                                           config.num_heads, rope=rope, positions=positions)
        return out, None

    return attn_fn


def check_token_ids(token_ids, config: ModelConfig):
    """ValueError for non-integer ids, no time axis, or more than context_length positions."""
    if not jnp.issubdtype(token_ids.dtype, jnp.integer):
        raise ValueError(f"token_ids must be integers, got dtype {token_ids.dtype}")
    if token_ids.ndim < 1:
        raise ValueError("token_ids need a time axis: shape (..., T)")
    if token_ids.shape[-1] > config.context_length:
        raise ValueError(f"sequence length {token_ids.shape[-1]} exceeds "
                         f"context_length={config.context_length}")


def embed(params: dict, token_ids, config: ModelConfig):
    """Token embeddings in the compute dtype: (..., T) ids -> (..., T, D)."""
    table = params["token_embeddings"].astype(config.dtype)
    return ops.embedding(token_ids, table)


def unembed(params: dict, x_BTD, config: ModelConfig):
    """Final norm and lm_head -> float32 logits (..., T, V)."""
    if not config.remove_rmsnorm:
        x_BTD = ops.rmsnorm(x_BTD, params["ln_final"], config.eps)
    return ops.linear(x_BTD, params["lm_head"].astype(x_BTD.dtype)).astype(jnp.float32)


# Shallow models are unrolled inside the scan: XLA then skips slicing the stacked weights and stacking the
# saved activations each iteration (about 7% less CPU time per training step at the TinyStories shape,
# scripts/bench_compile.py --step). Deeper ones keep a rolled loop so compile time stays flat in depth.
FULL_UNROLL_MAX_LAYERS = 8


def _scan_unroll(config: ModelConfig) -> int:
    return config.num_layers if config.num_layers <= FULL_UNROLL_MAX_LAYERS else 1


def forward(params: dict, token_ids, config: ModelConfig, positions=None):
    """Logits (..., T, V) float32 for integer token_ids (..., T); pure and jit-able with config static.

    Parameters stay float32; computation runs in config.dtype. positions (..., T) or (T,) int, default
    arange(T), must be < context_length. Layers run under one lax.scan over the stacked axis.
    """
    token_ids = jnp.asarray(token_ids)
    check_token_ids(token_ids, config)
    t = token_ids.shape[-1]
    if positions is None:
        positions = jnp.arange(t)
    else:
        positions = jnp.asarray(positions)
        if positions.shape[-1:] != (t,):
            raise ValueError(f"positions shape {positions.shape} does not end in T={t}")
    dtype = jnp.dtype(config.dtype)
    x_BTD = embed(params, token_ids, config)
    attn_fn = default_attn_fn(config, positions)
    layers = jax.tree_util.tree_map(lambda p: p.astype(dtype), params["layers"])

    def body(x, layer_params):
        y, _ = block(layer_params, x, config, attn_fn)
        return y, None

    x_BTD, _ = jax.lax.scan(body, x_BTD, layers, unroll=_scan_unroll(config))
    logits = unembed(params, x_BTD, config)
    chex.assert_shape(logits, (*token_ids.shape, config.vocab_size))
    return logits


# ---- Flax NNX view ---------------------------------------------------------------------------------

class Linear(nnx.Module):
    """A bias-free linear layer holding `weight` (d_out, d_in)."""

    def __init__(self, weight):
        self.weight = nnx.Param(jnp.asarray(weight))


class Embedding(nnx.Module):
    def __init__(self, weight):
        self.weight = nnx.Param(jnp.asarray(weight))


class RMSNorm(nnx.Module):
    def __init__(self, weight):
        self.weight = nnx.Param(jnp.asarray(weight))


class Attention(nnx.Module):
    def __init__(self, qkv, output):
        q, k, v = jnp.split(qkv, 3, axis=0)
        self.q_proj, self.k_proj, self.v_proj = Linear(q), Linear(k), Linear(v)
        self.output_proj = Linear(output)


class FFN(nnx.Module):
    def __init__(self, w1, w2, w3=None):
        self.w1, self.w2 = Linear(w1), Linear(w2)
        if w3 is not None:
            self.w3 = Linear(w3)


class Block(nnx.Module):
    def __init__(self, lp: dict):
        self.attn = Attention(lp["attn"]["qkv_proj"], lp["attn"]["output_proj"])
        self.ffn = FFN(**lp["ffn"])
        if "ln1" in lp:
            self.ln1, self.ln2 = RMSNorm(lp["ln1"]), RMSNorm(lp["ln2"])


class TransformerLM(nnx.Module):
    """NNX module with CS336 state-dict names; the math is `forward` on `self.to_params()`.

    `TransformerLM(config, rngs=nnx.Rngs(0))` initialises with `init_params(config, rngs.params())`;
    `from_params(params, config)` wraps an existing pytree (copying it into per-layer Params), and
    `to_params()` stacks the Params back (a jit-traceable concat, so `nnx.jit` / `nnx.grad` work).
    For the fastest training step use the pytree and `forward` directly.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs | None = None, params: dict | None = None):
        if params is None:
            rngs = rngs if rngs is not None else nnx.Rngs(0)
            params = init_params(config, rngs.params())
        self.config = config
        self.token_embeddings = Embedding(params["token_embeddings"])
        self.layers = nnx.List([Block(jax.tree_util.tree_map(lambda p: p[i], params["layers"]))
                                for i in range(config.num_layers)])
        if "ln_final" in params:
            self.ln_final = RMSNorm(params["ln_final"])
        self.lm_head = Linear(params["lm_head"])

    @classmethod
    def from_params(cls, params: dict, config: ModelConfig) -> "TransformerLM":
        return cls(config, params=params)

    def to_params(self) -> dict:
        """The stacked params pytree (see module docstring) built from this module's Params."""
        def layer(b: Block) -> dict:
            a = b.attn
            lp = {"attn": {"qkv_proj": jnp.concatenate([a.q_proj.weight[...], a.k_proj.weight[...],
                                                        a.v_proj.weight[...]], axis=0),
                           "output_proj": a.output_proj.weight[...]},
                  "ffn": {"w1": b.ffn.w1.weight[...], "w2": b.ffn.w2.weight[...]}}
            if hasattr(b.ffn, "w3"):
                lp["ffn"]["w3"] = b.ffn.w3.weight[...]
            if hasattr(b, "ln1"):
                lp["ln1"], lp["ln2"] = b.ln1.weight[...], b.ln2.weight[...]
            return lp

        per_layer = [layer(b) for b in self.layers]
        params = {"token_embeddings": self.token_embeddings.weight[...],
                  "layers": jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *per_layer),
                  "lm_head": self.lm_head.weight[...]}
        if hasattr(self, "ln_final"):
            params["ln_final"] = self.ln_final.weight[...]
        return params

    def __call__(self, token_ids, positions=None):
        return forward(self.to_params(), token_ids, self.config, positions)
