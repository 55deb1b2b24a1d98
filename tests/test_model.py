"""jaxlm.model: forward against a float64 numpy LM, causality, ablations, init statistics, NNX view."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import np_reference as ref
from jaxlm import model
from jaxlm.config import ModelConfig
from jaxlm.state_dict import params_to_state_dict, state_dict_shapes

CFG = ModelConfig(vocab_size=53, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48)
ABLATIONS = {
    "remove_rmsnorm": dict(remove_rmsnorm=True),
    "use_post_norm": dict(use_post_norm=True),
    "remove_rope": dict(remove_rope=True),
    "ffn_silu": dict(ffn_type="silu"),
}
CONFIGS = {"base": CFG, **{k: dataclasses.replace(CFG, **v) for k, v in ABLATIONS.items()}}
IDS = np.random.default_rng(0).integers(0, CFG.vocab_size, size=(2, 12))

fwd = jax.jit(model.forward, static_argnums=2)


@pytest.fixture(scope="module")
def params():
    return model.init_params(CFG, jax.random.PRNGKey(0))


def params_for(config, base_params):
    """The base params restricted to what `config` uses (so ablations share every weight they can)."""
    shapes = model.param_shapes(config)

    def restrict(p, s):
        return {k: restrict(p[k], v) for k, v in s.items()} if isinstance(s, dict) else p
    return restrict(base_params, shapes)


@pytest.mark.parametrize("name", CONFIGS)
def test_forward_matches_float64_numpy_lm(name, params):
    config = CONFIGS[name]
    p = params_for(config, params)
    logits = fwd(p, jnp.asarray(IDS), config)
    assert logits.shape == (*IDS.shape, config.vocab_size) and logits.dtype == jnp.float32
    expected = ref.lm(params_to_state_dict(p, config), IDS, config)
    np.testing.assert_allclose(np.asarray(logits, np.float64), expected, atol=1e-4)


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablations_run_finite_and_differ(name, params):
    config = CONFIGS[name]
    base = np.asarray(fwd(params, jnp.asarray(IDS), CFG))
    out = np.asarray(fwd(params_for(config, params), jnp.asarray(IDS), config))
    assert np.all(np.isfinite(out))
    assert np.abs(out - base).max() > 1e-3


def test_jit_equals_eager(params):
    eager = model.forward(params, jnp.asarray(IDS), CFG)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(fwd(params, jnp.asarray(IDS), CFG)), atol=1e-5)


def test_causal_grad_of_logits_wrt_future_embeddings_is_zero(params):
    ids = jnp.arange(10)  # distinct tokens: row ids[t] of the table is the embedding at position t
    grad_rows = jax.jit(jax.grad(lambda table, t: fwd({**params, "token_embeddings": table}, ids, CFG)[t].sum()))
    for t in (0, 4, 9):
        g = np.abs(np.asarray(grad_rows(params["token_embeddings"], t))).sum(-1)
        assert np.all(g[t + 1:10] == 0), f"logits at {t} depend on later positions"
        assert np.all(g[:t + 1] > 0)


def test_positions_shift_invariance_and_batch_positions(params):
    """RoPE is relative, so shifting every position by a constant leaves the logits unchanged."""
    ids = jnp.asarray(IDS[:, :8])
    base = fwd(params, ids, CFG, None)
    shifted = fwd(params, ids, CFG, jnp.arange(8) + 5)
    np.testing.assert_allclose(np.asarray(shifted), np.asarray(base), atol=1e-4)
    per_row = jnp.stack([jnp.arange(8), jnp.arange(8) + 3])
    np.testing.assert_allclose(np.asarray(fwd(params, ids, CFG, per_row)), np.asarray(base), atol=1e-4)
    assert np.abs(np.asarray(fwd(params, ids, CFG, jnp.arange(8) * 2)) - np.asarray(base)).max() > 1e-3


def test_bad_inputs_raise(params):
    with pytest.raises(ValueError, match="context_length"):
        model.forward(params, jnp.zeros((1, CFG.context_length + 1), jnp.int32), CFG)
    with pytest.raises(ValueError, match="integers"):
        model.forward(params, jnp.zeros((1, 4)), CFG)
    with pytest.raises(ValueError, match="positions"):
        model.forward(params, jnp.zeros((1, 4), jnp.int32), CFG, positions=jnp.arange(5))


@pytest.mark.parametrize("bad", [
    dict(d_model=30),  # not divisible by num_heads=4
    dict(d_model=20, num_heads=4),  # head dim 5 is odd, RoPE needs pairs
    dict(vocab_size=0), dict(context_length=-1), dict(num_layers=0), dict(num_heads=0), dict(d_ff=0),
    dict(d_model=32.0), dict(ffn_type="gelu"), dict(dtype="float16"), dict(rope_theta=0.0), dict(eps=-1.0),
    dict(remove_rmsnorm=True, use_post_norm=True),  # contradictory ablations
])
def test_invalid_configs_raise(bad):
    with pytest.raises(ValueError):
        ModelConfig(**{**CFG.to_dict(), **bad})


def test_valid_neighbours_of_the_invalid_configs():
    ModelConfig(**{**CFG.to_dict(), "d_model": 20, "remove_rope": True})  # odd head dim is fine for NoPE
    ModelConfig(**{**CFG.to_dict(), "d_model": 36, "num_heads": 6})


def trunc_std(sigma):
    """Standard deviation of N(0, sigma^2) truncated to [-3 sigma, 3 sigma]."""
    phi3 = math.exp(-4.5) / math.sqrt(2 * math.pi)
    z = math.erf(3 / math.sqrt(2))
    return sigma * math.sqrt(1 - 2 * 3 * phi3 / z)


def test_init_statistics_follow_the_handout():
    config = ModelConfig(vocab_size=1000, context_length=8, d_model=256, num_layers=2, num_heads=4, d_ff=768)
    p = jax.tree_util.tree_map(np.asarray, model.init_params(config, jax.random.PRNGKey(1)))
    D, F, V = 256, 768, 1000
    checks = {
        "token_embeddings": (p["token_embeddings"], 1.0),
        "q_proj": (p["layers"]["attn"]["qkv_proj"][:, :D], math.sqrt(2 / (2 * D))),
        "v_proj": (p["layers"]["attn"]["qkv_proj"][:, 2 * D:], math.sqrt(2 / (2 * D))),
        "output_proj": (p["layers"]["attn"]["output_proj"], math.sqrt(2 / (2 * D))),
        "w1": (p["layers"]["ffn"]["w1"], math.sqrt(2 / (D + F))),
        "w2": (p["layers"]["ffn"]["w2"], math.sqrt(2 / (D + F))),
        "w3": (p["layers"]["ffn"]["w3"], math.sqrt(2 / (D + F))),
        "lm_head": (p["lm_head"], math.sqrt(2 / (D + V))),
    }
    for name, (w, sigma) in checks.items():
        assert w.dtype == np.float32
        assert abs(w.mean()) < 0.02 * sigma, name
        assert w.std() == pytest.approx(trunc_std(sigma), rel=0.02), name
        assert np.abs(w).max() <= 3 * sigma * (1 + 1e-6), name
        assert np.abs(w).max() > 2.5 * sigma, name  # the tails are there, cut at 3 sigma
    for g in (p["layers"]["ln1"], p["layers"]["ln2"], p["ln_final"]):
        assert np.all(g == 1.0)
    w1 = p["layers"]["ffn"]["w1"]
    assert np.abs(w1[0] - w1[1]).max() > 0  # layers are initialised independently
    assert np.corrcoef(p["layers"]["ffn"]["w1"][0].ravel(), p["layers"]["ffn"]["w3"][0].ravel())[0, 1] < 0.01


def test_init_params_shapes_and_absent_entries():
    for name, config in CONFIGS.items():
        p = jax.eval_shape(lambda: model.init_params(config, jax.random.PRNGKey(0)))
        shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), p)
        assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(p))
        assert shapes == model.param_shapes(config), name
    assert "w3" not in model.param_shapes(CONFIGS["ffn_silu"])["layers"]["ffn"]
    assert "ln_final" not in model.param_shapes(CONFIGS["remove_rmsnorm"])


def test_layers_are_scanned_not_unrolled(params):
    """The traced program's size does not grow with depth."""
    def n_eqns(num_layers):
        config = dataclasses.replace(CFG, num_layers=num_layers)
        p = jax.eval_shape(lambda: model.init_params(config, jax.random.PRNGKey(0)))
        return len(jax.make_jaxpr(lambda p: model.forward(p, jnp.zeros((1, 4), jnp.int32), config))(p).eqns)
    assert n_eqns(2) == n_eqns(12)


def test_block_passes_attn_fn_output_and_aux(params):
    layer = jax.tree_util.tree_map(lambda a: a[0], params["layers"])
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 5, CFG.d_model))
    y, aux = model.block(layer, x, CFG, lambda ap, h: (jnp.zeros_like(h), "aux"))
    assert aux == "aux"
    w = {f"ffn.{k}.weight": v for k, v in layer["ffn"].items()} | {"ln2.weight": layer["ln2"]}
    expected = np.asarray(x, np.float64) + ref.swiglu(ref.rmsnorm(x, w["ln2.weight"]), w["ffn.w1.weight"],
                                                      w["ffn.w2.weight"], w["ffn.w3.weight"])
    np.testing.assert_allclose(np.asarray(y, np.float64), expected, atol=1e-5)


def test_bfloat16_compute_path(params):
    config = dataclasses.replace(CFG, dtype="bfloat16")
    logits = fwd(params, jnp.asarray(IDS), config)
    assert logits.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(logits)))
    base = np.asarray(fwd(params, jnp.asarray(IDS), CFG))
    np.testing.assert_allclose(np.asarray(logits), base, atol=0.15 * np.abs(base).max())
    loss = lambda p: fwd(p, jnp.asarray(IDS), config).mean()
    grads = jax.eval_shape(jax.grad(loss), params)  # dtypes without compiling the backward pass
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))


def test_nnx_module_mirrors_cs336_names_and_forward(params):
    m = model.TransformerLM.from_params(params, CFG)
    names = {".".join(str(k) for k in path) for path, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))}
    assert names == set(state_dict_shapes(CFG))
    call = nnx.jit(lambda m, ids: m(ids))
    np.testing.assert_allclose(np.asarray(call(m, jnp.asarray(IDS))),
                               np.asarray(fwd(params, jnp.asarray(IDS), CFG)), atol=1e-5)
    back = m.to_params()
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # gradients through the module equal gradients through the pytree
    g_mod = nnx.jit(nnx.grad(lambda m: m(jnp.asarray(IDS)).mean()))(m)
    g_pyt = jax.jit(jax.grad(lambda p: fwd(p, jnp.asarray(IDS), CFG).mean()))(params)
    np.testing.assert_allclose(np.asarray(g_mod["layers"][1]["attn"]["k_proj"]["weight"][...]),
                               np.asarray(g_pyt["layers"]["attn"]["qkv_proj"][1, CFG.d_model:2 * CFG.d_model]),
                               atol=1e-6)


def test_nnx_module_initialises_like_init_params():
    m = model.TransformerLM(CONFIGS["ffn_silu"], rngs=nnx.Rngs(params=7))
    p = m.to_params()
    assert jax.tree_util.tree_map(lambda a: tuple(a.shape), p) == model.param_shapes(CONFIGS["ffn_silu"])
    assert not hasattr(m.layers[0].ffn, "w3")


def test_any_leading_batch_dims(params):
    ids = jnp.asarray(IDS[:, :6])
    batched = np.asarray(fwd(params, ids, CFG))
    np.testing.assert_allclose(np.asarray(fwd(params, ids[1], CFG)), batched[1], atol=1e-5)
    np.testing.assert_allclose(np.asarray(fwd(params, ids.reshape(1, 2, 6), CFG))[0], batched, atol=1e-5)
