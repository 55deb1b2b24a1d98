"""CS336's `tests/adapters.py` interface, backed by jaxlm.

Same function names, argument order and meaning as the assignment's adapters, so the official test suite
can be pointed here (see README, "Using jaxlm with the CS336 test suite"). Inputs may be numpy or JAX
arrays (weights in CS336's `(d_out, d_in)` layout); outputs are JAX arrays.
"""
from __future__ import annotations

# ---- tokenizer -------------------------------------------------------------------------------------
import os  # noqa: E402
from typing import Any  # noqa: E402

from tokenizer import Tokenizer, train_bpe  # noqa: E402


def get_tokenizer(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                  special_tokens: list[str] | None = None) -> Tokenizer:
    """A byte-level BPE tokenizer over the given vocabulary and merges (in creation order)."""
    return Tokenizer(vocab, merges, special_tokens)


def run_train_bpe(input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str],
                  **kwargs: Any) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """(vocab, merges) trained on input_path; kwargs pass on to `tokenizer.train_bpe` (num_workers, progress)."""
    return train_bpe(input_path, vocab_size, special_tokens, **kwargs)


# ---- model -----------------------------------------------------------------------------------------
import functools  # noqa: E402  (section-local imports)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlm import model, ops  # noqa: E402
from jaxlm.config import ModelConfig  # noqa: E402
from jaxlm.state_dict import layer_state_dict_to_params, state_dict_to_params  # noqa: E402


def _arr(x, dtype=None):
    """A JAX array from numpy, JAX or (duck-typed, never imported) torch input; floats become float32
    (float64 inside a `_float64` adapter)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if dtype is None and np.issubdtype(x.dtype, np.floating):
        dtype = jax.dtypes.canonicalize_dtype(np.float64)
    return jnp.asarray(x if dtype is None else x.astype(dtype))


def _float64(adapter):
    """Compute a single-op adapter in float64 (x64 enabled for the call only), return float32 as the
    assignment's tensors are. The ops are checked to 1e-6 absolute, tighter than float32 arithmetic gives
    for outputs of size ~2 (one final rounding stays well inside it); the model itself (and
    run_transformer_lm) computes in its config dtype."""
    @functools.wraps(adapter)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            out = adapter(*args, **kwargs)
            return out.astype(jnp.float32) if jnp.issubdtype(out.dtype, jnp.floating) else out
    return wrapped


def _config(**kw):
    return ModelConfig(**{"vocab_size": 1, "num_layers": 1, **kw})


@_float64
def run_linear(d_in, d_out, weights, in_features):
    return ops.linear(_arr(in_features), _arr(weights))


@_float64
def run_embedding(vocab_size, d_model, weights, token_ids):
    return ops.embedding(_arr(token_ids), _arr(weights))


@_float64
def run_swiglu(d_model, d_ff, w1_weight, w2_weight, w3_weight, in_features):
    return ops.swiglu(_arr(in_features), _arr(w1_weight), _arr(w2_weight), _arr(w3_weight))


@_float64
def run_scaled_dot_product_attention(Q, K, V, mask=None):
    return ops.scaled_dot_product_attention(_arr(Q), _arr(K), _arr(V),
                                            None if mask is None else _arr(mask, bool))


@_float64
def run_multihead_self_attention(d_model, num_heads, q_proj_weight, k_proj_weight, v_proj_weight,
                                 o_proj_weight, in_features):
    w_qkv = (_arr(q_proj_weight), _arr(k_proj_weight), _arr(v_proj_weight))
    return ops.multihead_self_attention(_arr(in_features), w_qkv, _arr(o_proj_weight), num_heads)


@_float64
def run_multihead_self_attention_with_rope(d_model, num_heads, max_seq_len, theta, q_proj_weight,
                                           k_proj_weight, v_proj_weight, o_proj_weight, in_features,
                                           token_positions=None):
    x = _arr(in_features)
    w_qkv = (_arr(q_proj_weight), _arr(k_proj_weight), _arr(v_proj_weight))
    rope = ops.rope_tables(d_model // num_heads, theta, max_seq_len)
    positions = None if token_positions is None else _arr(token_positions)
    return ops.multihead_self_attention(x, w_qkv, _arr(o_proj_weight), num_heads, rope=rope,
                                        positions=positions)


@_float64
def run_rope(d_k, theta, max_seq_len, in_query_or_key, token_positions):
    return ops.apply_rope(_arr(in_query_or_key), _arr(token_positions),
                          *ops.rope_tables(d_k, theta, max_seq_len))


@_float64
def run_transformer_block(d_model, num_heads, d_ff, max_seq_len, theta, weights, in_features):
    config = _config(context_length=max_seq_len, d_model=d_model, num_heads=num_heads, d_ff=d_ff,
                     rope_theta=theta)
    x = _arr(in_features)
    attn_fn = model.default_attn_fn(config, jnp.arange(x.shape[-2]))
    y, _ = model.block(layer_state_dict_to_params(weights, config), x, config, attn_fn)
    return y


def run_transformer_lm(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta,
                       weights, in_indices):
    config = _config(vocab_size=vocab_size, context_length=context_length, d_model=d_model,
                     num_layers=num_layers, num_heads=num_heads, d_ff=d_ff, rope_theta=rope_theta)
    return model.forward(state_dict_to_params(weights, config), _arr(in_indices), config)


@_float64
def run_rmsnorm(d_model, eps, weights, in_features):
    return ops.rmsnorm(_arr(in_features), _arr(weights), eps)


@_float64
def run_silu(in_features):
    return ops.silu(_arr(in_features))


@_float64
def run_softmax(in_features, dim):
    return ops.softmax(_arr(in_features), axis=dim)

# ---- training --------------------------------------------------------------------------------------
from jaxlm import checkpoint as _checkpoint, data as _data, losses as _losses, optim as _optim  # noqa: E402


def run_cross_entropy(inputs, targets):
    return _losses.cross_entropy(_arr(inputs), _arr(targets))


def run_gradient_clipping(grads_list, max_l2_norm):
    """The clipped gradients as a new list (None entries, i.e. frozen parameters, stay None)."""
    grads = [None if g is None else _arr(g) for g in grads_list]
    return list(_optim.clip_by_global_norm(grads, max_l2_norm)[0])


def get_adamw_cls():
    """A factory `(lr, weight_decay, betas, eps) -> optax.GradientTransformation` (jaxlm's AdamW)."""
    def make(lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8):
        return _optim.adamw(lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return make


def run_get_lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters):
    return _optim.cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)


def run_get_batch(dataset, batch_size, context_length, device):
    """Random (x, y) windows on `device`; an absent device (e.g. "cuda:99") raises DeviceError."""
    return _data.get_batch(np.asarray(dataset), batch_size, context_length,
                           key_or_rng=np.random.default_rng(), device=device)


def run_save_checkpoint(params, opt_state, iteration, out):
    _checkpoint.save_checkpoint(params, opt_state, iteration, out)


def run_load_checkpoint(src, params, opt_state):
    return _checkpoint.load_checkpoint(src, params, opt_state)
