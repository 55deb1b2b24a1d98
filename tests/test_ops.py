"""jaxlm.ops against float64 numpy formulas, jax.nn, and finite differences."""
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import np_reference as ref
from jaxlm import ops

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fresh_rng(request):
    """Each test draws the same data whether it runs alone or after others."""
    global RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.name.encode()))


def randn(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def assert_close(actual, expected, atol=1e-6, rtol=0.0):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, atol=atol, rtol=rtol)


def test_linear_and_embedding_leading_dims():
    x, w = randn(2, 3, 5, 16), randn(8, 16, scale=0.25)
    assert_close(ops.linear(x, w), ref.linear(x, w), atol=1e-5)
    table, ids = randn(11, 4), RNG.integers(0, 11, size=(2, 3, 5))
    out = ops.embedding(jnp.asarray(ids), table)
    assert out.shape == (2, 3, 5, 4)
    assert_close(out, table[ids], atol=0)


def test_shape_mismatch_is_caught_at_trace_time():
    with pytest.raises(AssertionError):
        ops.linear(randn(3, 5), randn(4, 6))
    with pytest.raises(AssertionError):
        ops.rmsnorm(randn(3, 5), randn(4))
    with pytest.raises(AssertionError):
        ops.embedding(jnp.ones(3), randn(4, 2))  # float ids


def test_rmsnorm_matches_formula_and_keeps_dtype():
    x, g = randn(2, 7, 16, scale=3.0), randn(16)
    assert_close(ops.rmsnorm(x, g, 1e-5), ref.rmsnorm(x, g, 1e-5), atol=1e-5)
    y = ops.rmsnorm(x.astype(jnp.bfloat16), g)
    assert y.dtype == jnp.bfloat16
    assert_close(y.astype(jnp.float32), ref.rmsnorm(x, g), atol=5e-2)


def finite_difference_check(f, args, argnum, eps=1e-3, atol=2e-3, n=6):
    """Compare jax.grad of sum(f * cotangent) with central differences along n random directions."""
    args = [np.asarray(a, np.float32) for a in args]
    out_shape = np.shape(f(*args))
    cot = randn(*out_shape)
    loss = jax.jit(lambda *a: jnp.sum(f(*a) * cot))
    g = np.asarray(jax.grad(loss, argnums=argnum)(*args), np.float64)
    for _ in range(n):
        d = randn(*args[argnum].shape)
        plus, minus = list(args), list(args)
        plus[argnum] = args[argnum] + eps * d
        minus[argnum] = args[argnum] - eps * d
        fd = (float(loss(*plus)) - float(loss(*minus))) / (2 * eps)
        np.testing.assert_allclose(np.sum(g * d), fd, atol=atol, rtol=2e-3)


def test_rmsnorm_grad_finite_differences():
    x, g = randn(3, 8), randn(8)
    f = lambda x, g: ops.rmsnorm(x, g, 1e-5)
    finite_difference_check(f, (x, g), 0)
    finite_difference_check(f, (x, g), 1)


def test_silu_softmax_against_jax_nn_and_numpy():
    x = randn(4, 9, scale=4.0)
    assert_close(ops.silu(x), ref.silu(x), atol=1e-6)
    assert_close(ops.silu(x), jax.nn.silu(x), atol=1e-6)
    for axis in (0, -1):
        assert_close(ops.softmax(x, axis), ref.softmax(x, axis), atol=1e-6)
        assert_close(ops.softmax(x, axis), jax.nn.softmax(x, axis=axis), atol=1e-6)
    big = np.array([1000.0, 1001.0, 999.0], np.float32)  # exp would overflow without the max shift
    assert_close(ops.softmax(big), ref.softmax(big), atol=1e-6)


def test_softmax_all_masked_slice_is_zero_not_nan():
    x = np.array([[1.0, -np.inf, 2.0], [-np.inf, -np.inf, -np.inf]], np.float32)
    y = np.asarray(ops.softmax(x, -1))
    assert_close(y[0], ref.softmax(x[0]), atol=1e-6)
    assert np.all(y[1] == 0)


def test_ffns_against_numpy():
    x = randn(2, 5, 16)
    w1, w2, w3 = randn(24, 16, scale=0.3), randn(16, 24, scale=0.3), randn(24, 16, scale=0.3)
    assert_close(ops.swiglu(x, w1, w2, w3), ref.swiglu(x, w1, w2, w3), atol=1e-5)
    assert_close(ops.silu_ffn(x, w1, w2), ref.silu_ffn(x, w1, w2), atol=1e-5)
    sig = lambda z: 1 / (1 + np.exp(-z))
    assert_close(ops.glu(x, w1, w3), sig(ref.linear(x, w1)) * ref.linear(x, w3), atol=1e-5)


def test_sdpa_against_numpy_and_jax_nn():
    B, H, Tq, Tk, d = 2, 3, 5, 7, 8
    q, k, v = randn(B, H, Tq, d), randn(B, H, Tk, d), randn(B, H, Tk, d)
    mask = RNG.random((B, 1, Tq, Tk)) < 0.7
    mask[..., 0] = True  # every query has some key
    out = ops.scaled_dot_product_attention(q, k, v, jnp.asarray(mask))
    assert_close(out, ref.sdpa(q, k, v, mask), atol=1e-6)
    # jax.nn.dot_product_attention takes (B, T, N, H) and the same boolean mask convention
    t = lambda a: np.swapaxes(a, 1, 2)
    expected = jax.nn.dot_product_attention(t(q), t(k), t(v), mask=jnp.asarray(mask))
    assert_close(out, np.swapaxes(np.asarray(expected), 1, 2), atol=1e-6)
    assert_close(ops.scaled_dot_product_attention(q, k, v), ref.sdpa(q, k, v), atol=1e-6)


def test_sdpa_query_without_keys_gives_zeros_and_finite_grads():
    q, k, v = randn(4, 8), randn(6, 8), randn(6, 8)
    mask = np.ones((4, 6), bool)
    mask[2] = False
    out = np.asarray(ops.scaled_dot_product_attention(q, k, v, jnp.asarray(mask)))
    assert np.all(out[2] == 0) and np.all(np.isfinite(out))
    grads = jax.jit(jax.grad(lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, mask).sum(), (0, 1, 2)))(q, k, v)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_rope_against_rotation_matrices():
    d, theta, max_len = 8, 10000.0, 32
    cos, sin = ops.rope_tables(d, theta, max_len)
    assert cos.shape == sin.shape == (max_len, d // 2)
    x = randn(2, 3, 6, d)
    pos = RNG.integers(0, max_len, size=(2, 3, 6))
    assert_close(ops.apply_rope(x, jnp.asarray(pos), cos, sin), ref.rope(x, pos, theta), atol=1e-5)
    # positions broadcast: one (T,) vector for every leading index
    pos_t = np.arange(6)
    assert_close(ops.apply_rope(x, jnp.asarray(pos_t), cos, sin), ref.rope(x, pos_t, theta), atol=1e-5)


def test_rope_relative_property():
    """<R_m q, R_n k> depends only on m - n."""
    d = 16
    cos, sin = ops.rope_tables(d, 10000.0, 64)
    q, k = randn(d), randn(d)
    dot = lambda m, n: float(jnp.dot(ops.apply_rope(q, jnp.array(m), cos, sin),
                                     ops.apply_rope(k, jnp.array(n), cos, sin)))
    for m, n in [(5, 2), (9, 6), (40, 37)]:
        assert dot(m, n) == pytest.approx(dot(3, 0), abs=1e-4)
    assert abs(dot(5, 2) - dot(5, 3)) > 1e-3  # and it does depend on the offset


def test_rope_grad_finite_differences():
    cos, sin = ops.rope_tables(8, 10000.0, 16)
    pos = jnp.arange(5)
    finite_difference_check(lambda x: ops.apply_rope(x, pos, cos, sin), (randn(5, 8),), 0)


def test_rope_rejects_odd_dims():
    with pytest.raises(ValueError, match="even"):
        ops.rope_tables(7, 10000.0, 8)


@pytest.fixture(scope="module")
def mha_inputs():
    D, H, T = 16, 4, 6
    rng = np.random.default_rng(7)
    ws = [(rng.standard_normal((D, D)) * D ** -0.5).astype(np.float32) for _ in range(4)]
    return D, H, T, rng.standard_normal((2, T, D)).astype(np.float32), ws


def test_split_qkv_heads_against_numpy_slicing():
    rng = np.random.default_rng(7)
    B, T, H, dk = 2, 5, 3, 4
    qkv = rng.normal(size=(B, T, 3 * H * dk)).astype(np.float32)
    q, k, v = ops.split_qkv_heads(jnp.asarray(qkv), H)
    for i, got in enumerate((q, k, v)):
        block = qkv[..., i * H * dk:(i + 1) * H * dk]  # [q; k; v], each head-major
        want = np.stack([block[..., h * dk:(h + 1) * dk] for h in range(H)], axis=1)  # (B, H, T, dk)
        np.testing.assert_array_equal(np.asarray(got), want)
    with pytest.raises(ValueError, match="multiple of 3 \\* num_heads"):
        ops.split_qkv_heads(jnp.zeros((T, 3 * H * dk + 1)), H)


def test_mha_against_numpy_fused_and_separate(mha_inputs):
    D, H, T, x, (wq, wk, wv, wo) = mha_inputs
    expected = ref.mha(x, wq, wk, wv, wo, H)
    fused = ops.multihead_self_attention(x, np.concatenate([wq, wk, wv]), wo, H)
    separate = ops.multihead_self_attention(x, (wq, wk, wv), wo, H)
    assert_close(fused, expected, atol=1e-6)
    assert_close(separate, fused, atol=0)


def test_mha_with_rope_against_numpy(mha_inputs):
    D, H, T, x, (wq, wk, wv, wo) = mha_inputs
    rope = ops.rope_tables(D // H, 10000.0, 32)
    pos = np.array([3, 4, 5, 9, 10, 11])
    out = ops.multihead_self_attention(x, (wq, wk, wv), wo, H, rope=rope, positions=jnp.asarray(pos))
    assert_close(out, ref.mha(x, wq, wk, wv, wo, H, theta=10000.0, positions=pos), atol=1e-6)


def test_mha_is_causal(mha_inputs):
    D, H, T, x, (wq, wk, wv, wo) = mha_inputs
    f = lambda x: ops.multihead_self_attention(x, (wq, wk, wv), wo, H)
    changed = x.copy()
    changed[:, 4:] += 1.0  # perturb the future
    assert_close(f(changed)[:, :4], np.asarray(f(x)[:, :4], np.float64), atol=1e-6)


def test_ops_run_in_bfloat16(mha_inputs):
    D, H, T, x, (wq, wk, wv, wo) = mha_inputs
    bf = lambda a: jnp.asarray(a, jnp.bfloat16)
    rope = ops.rope_tables(D // H, 10000.0, 32)
    mha = jax.jit(lambda x, w_qkv, wo: ops.multihead_self_attention(x, w_qkv, wo, H, rope=rope))
    out = mha(bf(x), (bf(wq), bf(wk), bf(wv)), bf(wo))
    assert out.dtype == jnp.bfloat16
    assert_close(out.astype(jnp.float32), ref.mha(x, wq, wk, wv, wo, H, theta=10000.0), atol=0.1)
    assert ops.apply_rope(bf(x), jnp.arange(T), *ops.rope_tables(D, 1e4, 8)).dtype == jnp.bfloat16
    assert ops.softmax(bf(x)).dtype == jnp.bfloat16
