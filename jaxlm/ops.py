"""The Transformer's math as pure functions: the only place it lives.

Every function takes arrays with any leading batch dimensions, checks shapes with chex at trace time (free
under jit) and computes in the dtype of its activation input (float32 or bfloat16); the numerically touchy
spots (RMSNorm statistics, attention scores and softmax, RoPE rotation) are done in float32 and cast back.
Linear weights are stored `(d_out, d_in)` as in CS336.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np


def _f32(x):
    """x upcast to float32 when it is a narrower float (bfloat16); float32 stays as is."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def linear(x, w):
    """y = x W^T with W stored (d_out, d_in); computed in x's dtype."""
    chex.assert_rank(w, 2)
    chex.assert_axis_dimension(x, -1, w.shape[1])
    # Leading dims flattened to one: XLA:CPU runs a plain 2-D matmul (and its transposes in the backward
    # pass) faster than the same contraction over (B, T, d_in): 7% less CPU time per TinyStories step.
    y = jnp.dot(x.reshape(-1, x.shape[-1]), w.astype(x.dtype).T)
    return y.reshape(*x.shape[:-1], w.shape[0])


def embedding(ids, table):
    """Rows of table (vocab, d_model) for integer ids of any shape -> ids.shape + (d_model,)."""
    chex.assert_rank(table, 2)
    chex.assert_type(ids, int)
    return jnp.take(table, ids, axis=0)


def rmsnorm(x, g, eps=1e-5):
    """x / sqrt(mean(x^2) + eps) * g over the last axis; statistics in float32, result in x's dtype."""
    chex.assert_shape(g, (x.shape[-1],))
    x32 = _f32(x)
    inv_rms = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    return (x32 * inv_rms * _f32(g)).astype(x.dtype)


def silu(x):
    """x * sigmoid(x)."""
    return x * jax.nn.sigmoid(x)


def _gate(x, w_gate, w_value, act):
    """act(x W_gate^T) * (x W_value^T): the gated unit shared by GLU and SwiGLU."""
    return act(linear(x, w_gate)) * linear(x, w_value)


def glu(x, w1, w2):
    """GLU (Dauphin et al. 2017): sigmoid(W1 x) * W2 x."""
    return _gate(x, w1, w2, jax.nn.sigmoid)


def swiglu(x, w1, w2, w3):
    """SwiGLU FFN: W2 (silu(W1 x) * W3 x); w1, w3 (d_ff, d_model), w2 (d_model, d_ff)."""
    return linear(_gate(x, w1, w3, silu), w2)


def silu_ffn(x, w1, w2):
    """Ungated FFN (the `ffn_type="silu"` ablation): W2 silu(W1 x)."""
    return linear(silu(linear(x, w1)), w2)


@functools.lru_cache(maxsize=16)
def _rope_tables_np(d_k: int, theta: float, max_seq_len: int):
    k = np.arange(d_k // 2, dtype=np.float64)
    inv_freq = theta ** (-2.0 * k / d_k)
    angles = np.arange(max_seq_len, dtype=np.float64)[:, None] * inv_freq[None, :]
    # Angles in float64 so that large positions keep full float32 precision in the tables.
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rope_tables(d_k: int, theta: float, max_seq_len: int):
    """(cos, sin), each (max_seq_len, d_k/2): angle for position i and pair k is i / theta^(2k/d_k)."""
    if d_k <= 0 or d_k % 2:
        raise ValueError(f"RoPE needs a positive even head dim, got d_k={d_k}")
    if max_seq_len <= 0 or theta <= 0:
        raise ValueError(f"RoPE needs max_seq_len > 0 and theta > 0, got {max_seq_len}, {theta}")
    cos, sin = _rope_tables_np(int(d_k), float(theta), int(max_seq_len))
    return jnp.asarray(cos), jnp.asarray(sin)


def apply_rope(x, positions, cos, sin):
    """Rotate each pair (x[2k], x[2k+1]) of the last axis by the angle tabulated for its position.

    x (..., d_k); positions int, x.shape[:-1] or broadcastable to it; cos, sin (max_seq_len, d_k/2).
    Positions past the table are clamped by the gather (JAX semantics), so callers keep them in range.
    """
    d_k = x.shape[-1]
    chex.assert_equal_shape([cos, sin])
    chex.assert_axis_dimension(cos, 1, d_k // 2)
    chex.assert_type(positions, int)
    if d_k % 2:
        raise ValueError(f"apply_rope needs an even feature dim, got {d_k}")
    c, s = cos[positions], sin[positions]  # positions.shape + (d_k/2,)
    pairs = _f32(x).reshape(*x.shape[:-1], d_k // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    rotated = jnp.stack([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
    return rotated.reshape(*rotated.shape[:-2], d_k).astype(x.dtype)


def softmax(x, axis=-1):
    """exp(x - max) / sum, in float32 (result in x's dtype). A slice that is all -inf gives zeros, not NaN."""
    x32 = _f32(x)
    m = jnp.max(x32, axis=axis, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    e = jnp.exp(x32 - m)
    total = jnp.sum(e, axis=axis, keepdims=True)
    return (e / jnp.where(total == 0, 1.0, total)).astype(x.dtype)


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k)) v with any (broadcastable) leading dims.

    q (..., Tq, d_k), k (..., Tk, d_k), v (..., Tk, d_v); mask boolean, broadcastable to (..., Tq, Tk),
    True = may attend. Scores and softmax in float32; a query with no allowed key gets zeros.
    """
    chex.assert_axis_dimension(k, -1, q.shape[-1])
    chex.assert_axis_dimension(v, -2, k.shape[-2])
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    scores = jnp.einsum("...qd,...kd->...qk", q, k, preferred_element_type=jnp.float32)
    if mask is not None:
        chex.assert_type(mask, bool)
        scores = jnp.where(mask, scores, -jnp.inf)
    weights = softmax(scores, axis=-1)
    return jnp.einsum("...qk,...kd->...qd", weights.astype(v.dtype), v)


def causal_mask(t: int):
    """(t, t) boolean, True where key j <= query i."""
    return jnp.tril(jnp.ones((t, t), dtype=bool))


def split_qkv_heads(qkv, num_heads: int):
    """Split a fused projection (..., T, 3*H*d_k) with features [q; k; v] (each head-major) into q, k, v
    of shape (..., H, T, d_k): heads become a batch dimension."""
    *lead, t, hd3 = qkv.shape
    if hd3 % (3 * num_heads):
        raise ValueError(f"qkv has {hd3} features, not a multiple of 3 * num_heads = {3 * num_heads}")
    qkv = qkv.reshape(*lead, t, 3, num_heads, hd3 // (3 * num_heads))
    qkv = jnp.moveaxis(qkv, -4, -2)  # (..., 3, H, T, d_k)
    return qkv[..., 0, :, :, :], qkv[..., 1, :, :, :], qkv[..., 2, :, :, :]


def multihead_self_attention(x, w_qkv, wo, num_heads, *, rope=None, positions=None):
    """Causal multi-head self-attention over x (..., T, D).

    w_qkv: (3*H*d_k, D) with rows [W_q; W_k; W_v], or a tuple (W_q, W_k, W_v) each (H*d_k, D), which is
    concatenated so Q, K, V still come from one matmul. wo (D_out, H*d_k). rope: (cos, sin) tables or
    None; positions (..., T) int, default arange(T). Heads are a batch dimension; RoPE rotates Q and K
    with the same angles in every head.
    """
    if isinstance(w_qkv, (tuple, list)):
        chex.assert_equal_shape(list(w_qkv))
        w_qkv = jnp.concatenate(w_qkv, axis=0)
    chex.assert_rank(w_qkv, 2)
    hd3, _ = w_qkv.shape
    if hd3 % (3 * num_heads):
        raise ValueError(f"w_qkv has {hd3} rows, not a multiple of 3 * num_heads = {3 * num_heads}")
    d_k = hd3 // (3 * num_heads)
    t = x.shape[-2]
    q, k, v = split_qkv_heads(linear(x, w_qkv), num_heads)  # each (..., H, T, d_k)
    if rope is not None:
        if positions is None:
            positions = jnp.arange(t)
        positions = jnp.asarray(positions)[..., None, :]  # same angles for every head
        q = apply_rope(q, positions, *rope)
        k = apply_rope(k, positions, *rope)
    out = scaled_dot_product_attention(q, k, v, causal_mask(t))  # (..., H, T, d_k)
    out = jnp.moveaxis(out, -3, -2).reshape(*x.shape[:-1], num_heads * d_k)
    return linear(out, wo)
