"""cross_entropy against a float64 numpy reference (large logits included), its gradient, perplexity."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.losses import cross_entropy, perplexity


def numpy_cross_entropy(logits, targets):
    z = np.asarray(logits, np.float64).reshape(-1, logits.shape[-1])
    t = np.asarray(targets).reshape(-1)
    log_probs = z - z.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    return -log_probs[np.arange(len(t)), t].mean()


@pytest.mark.parametrize("shape", [(7, 11), (2, 5, 13)])
def test_matches_float64_reference(shape):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=shape).astype(np.float32) * 3
    targets = rng.integers(0, shape[-1], size=shape[:-1])
    got = cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), numpy_cross_entropy(logits, targets), rtol=1e-6)
    np.testing.assert_allclose(float(perplexity(got)), np.exp(numpy_cross_entropy(logits, targets)), rtol=1e-5)


def test_large_logits_stay_finite_and_exact():
    logits = np.array([[1e4, 0.0, -1e4], [3e4, 3e4 - 1.0, 2e4], [-5e4, -5e4, -5e4]], np.float32)
    targets = np.array([1, 1, 2])
    got = float(cross_entropy(jnp.asarray(logits), jnp.asarray(targets)))
    np.testing.assert_allclose(got, numpy_cross_entropy(logits, targets), rtol=1e-6)


def test_bfloat16_logits_are_computed_in_float32():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(4, 50)) * 20, jnp.bfloat16)
    targets = rng.integers(0, 50, size=4)
    got = cross_entropy(logits, jnp.asarray(targets))
    assert got.dtype == jnp.float32
    want = numpy_cross_entropy(np.asarray(logits.astype(jnp.float32)), targets)
    np.testing.assert_allclose(float(got), want, rtol=1e-6)


def test_gradient_is_softmax_minus_onehot():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 9)).astype(np.float32)
    targets = rng.integers(0, 9, size=6)
    grad = jax.grad(cross_entropy)(jnp.asarray(logits), jnp.asarray(targets))
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(6), targets] -= 1
    np.testing.assert_allclose(np.asarray(grad), p / 6, atol=1e-7)


def test_shape_mismatch_is_reported():
    with pytest.raises(AssertionError):
        cross_entropy(jnp.zeros((2, 3, 5)), jnp.zeros((2, 4), jnp.int32))
