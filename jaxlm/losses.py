"""Language-model losses: token cross-entropy and perplexity.

Cross-entropy is computed as `logsumexp(logits) - logits[target]` with the row max subtracted before
exponentiating, in float32 whatever the logits' dtype, so it stays finite for huge logits and never
materialises the softmax (the `(…, V)` probabilities are never formed, only their normaliser).
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def cross_entropy(logits, targets):
    """Mean negative log-likelihood of `targets` under `logits`.

    logits: `(..., V)` float array (any float dtype; upcast to float32).
    targets: `(...)` int array of class ids in [0, V).
    Returns a float32 scalar: the mean over all leading dims.
    """
    logits = jnp.asarray(logits)
    targets = jnp.asarray(targets)
    chex.assert_rank(logits, targets.ndim + 1)
    chex.assert_equal_shape_prefix([logits, targets], targets.ndim)
    chex.assert_type(targets, int)
    logits_NV = logits.reshape(-1, logits.shape[-1]).astype(jnp.float32)
    targets_N = targets.reshape(-1)
    max_N1 = jnp.max(logits_NV, axis=-1, keepdims=True)
    # The max is a constant shift: stop its gradient (it cancels exactly) to keep the backward pass simple.
    max_N1 = jnp.where(jnp.isfinite(max_N1), max_N1, 0.0)
    shifted_NV = logits_NV - jax.lax.stop_gradient(max_N1)
    lse_N = jnp.log(jnp.sum(jnp.exp(shifted_NV), axis=-1))
    target_logit_N = jnp.take_along_axis(shifted_NV, targets_N[:, None], axis=-1)[:, 0]
    return jnp.mean(lse_N - target_logit_N)


def perplexity(mean_loss):
    """exp(mean cross-entropy): the effective number of equally likely next tokens."""
    return jnp.exp(mean_loss)

