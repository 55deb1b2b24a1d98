"""The model half of jaxlm.cs336 (CS336's adapters) against float64 numpy references, at the assignment's
fixture shapes: 1e-6 absolute for the ops and the block (the op adapters compute in float64: float32
rounding alone puts a 64-term dot product of size ~2 about 1e-6 from the float64 value), 1e-4 for the
whole LM (in float32, as the model runs)."""
import zlib

import numpy as np
import pytest

import np_reference as ref
from jaxlm import cs336

D, H, F, T, B, V, L, THETA, MAX_LEN = 64, 4, 128, 12, 4, 100, 3, 10000.0, 32
RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def fresh_rng(request):
    """Each test draws the same data whether it runs alone or after others."""
    global RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.name.encode()))


def randn(*shape, fan_in=None):
    scale = 1.0 if fan_in is None else fan_in ** -0.5
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


X = randn(B, T, D)


def block_weights(prefix=""):
    w = {f"{prefix}attn.{n}.weight": randn(D, D, fan_in=D) for n in ("q_proj", "k_proj", "v_proj", "output_proj")}
    w |= {f"{prefix}ffn.w1.weight": randn(F, D, fan_in=D), f"{prefix}ffn.w2.weight": randn(D, F, fan_in=F),
          f"{prefix}ffn.w3.weight": randn(F, D, fan_in=D),
          f"{prefix}ln1.weight": 1 + 0.1 * randn(D), f"{prefix}ln2.weight": 1 + 0.1 * randn(D)}
    return w


def check(actual, expected, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, atol=atol, rtol=0)


def test_run_linear_embedding_silu_softmax_rmsnorm():
    w = randn(F, D, fan_in=D)
    check(cs336.run_linear(D, F, w, X), ref.linear(X, w))
    table, ids = randn(V, D), RNG.integers(0, V, size=(B, T))
    check(cs336.run_embedding(V, D, table, ids), table[ids], atol=0)
    check(cs336.run_silu(X), ref.silu(X))
    for dim in (-1, 1):
        check(cs336.run_softmax(X, dim), ref.softmax(X, dim))
    g = 1 + 0.1 * randn(D)
    check(cs336.run_rmsnorm(D, 1e-5, g, X), ref.rmsnorm(X, g, 1e-5))


def test_run_swiglu():
    w1, w2, w3 = randn(F, D, fan_in=D), randn(D, F, fan_in=F), randn(F, D, fan_in=D)
    check(cs336.run_swiglu(D, F, w1, w2, w3, X), ref.swiglu(X, w1, w2, w3))


def test_run_scaled_dot_product_attention():
    q, k, v = randn(B, T, 16), randn(B, 10, 16), randn(B, 10, 16)
    mask = RNG.random((B, T, 10)) < 0.5
    mask[..., 0] = True
    check(cs336.run_scaled_dot_product_attention(q, k, v, mask), ref.sdpa(q, k, v, mask))
    check(cs336.run_scaled_dot_product_attention(q, k, v), ref.sdpa(q, k, v))


def test_run_multihead_self_attention_with_and_without_rope():
    wq, wk, wv, wo = (randn(D, D, fan_in=D) for _ in range(4))
    check(cs336.run_multihead_self_attention(D, H, wq, wk, wv, wo, X), ref.mha(X, wq, wk, wv, wo, H))
    pos = np.arange(T)[None] + 7
    out = cs336.run_multihead_self_attention_with_rope(D, H, MAX_LEN, THETA, wq, wk, wv, wo, X, pos)
    check(out, ref.mha(X, wq, wk, wv, wo, H, theta=THETA, positions=pos[0]))
    out = cs336.run_multihead_self_attention_with_rope(D, H, MAX_LEN, THETA, wq, wk, wv, wo, X)
    check(out, ref.mha(X, wq, wk, wv, wo, H, theta=THETA))


def test_run_rope():
    x, pos = randn(2, T, 16), np.arange(T) + 3
    check(cs336.run_rope(16, THETA, MAX_LEN, x, pos), ref.rope(x, pos, THETA))


def test_run_transformer_block():
    from jaxlm.config import ModelConfig
    w = block_weights()
    cfg = ModelConfig(vocab_size=1, context_length=MAX_LEN, d_model=D, num_layers=1, num_heads=H, d_ff=F,
                      rope_theta=THETA)
    # The block adds O(1) sublayer outputs, so their float32 rounding (~1e-6) can show in small results.
    check(cs336.run_transformer_block(D, H, F, MAX_LEN, THETA, w, X), ref.block(w, X, cfg))


def test_run_transformer_lm():
    from jaxlm.config import ModelConfig
    w = {"token_embeddings.weight": randn(V, D), "ln_final.weight": 1 + 0.1 * randn(D),
         "lm_head.weight": randn(V, D, fan_in=D)}
    for i in range(L):
        w |= block_weights(f"layers.{i}.")
    ids = RNG.integers(0, V, size=(B, T))
    cfg = ModelConfig(vocab_size=V, context_length=MAX_LEN, d_model=D, num_layers=L, num_heads=H, d_ff=F,
                      rope_theta=THETA)
    out = cs336.run_transformer_lm(V, MAX_LEN, D, L, H, F, THETA, w, ids)
    assert out.shape == (B, T, V)
    check(out, ref.lm(w, ids, cfg), atol=1e-4)
    with pytest.raises(ValueError, match="missing keys"):
        cs336.run_transformer_lm(V, MAX_LEN, D, L + 1, H, F, THETA, w, ids)


def test_torch_inputs():
    torch = pytest.importorskip("torch")
    w = randn(F, D, fan_in=D)
    out = cs336.run_linear(D, F, torch.from_numpy(w).requires_grad_(True), torch.from_numpy(X))
    check(out, ref.linear(X, w))
    ids = torch.from_numpy(RNG.integers(0, V, size=(B, T)))
    table = randn(V, D)
    check(cs336.run_embedding(V, D, torch.from_numpy(table), ids), table[ids.numpy()], atol=0)
