"""CS336 state dict <-> params: exact round trip, key names and shapes, errors listing every problem."""
import dataclasses

import jax
import numpy as np
import pytest

from jaxlm import model
from jaxlm.config import ModelConfig
from jaxlm.state_dict import params_to_state_dict, state_dict_to_params

CFG = ModelConfig(vocab_size=17, context_length=8, d_model=12, num_layers=3, num_heads=3, d_ff=20)


def random_state_dict(config, seed=0):
    """A CS336-keyed state dict built by hand (independently of jaxlm.state_dict)."""
    rng = np.random.default_rng(seed)
    V, D, F = config.vocab_size, config.d_model, config.d_ff
    shapes = {"token_embeddings.weight": (V, D), "lm_head.weight": (V, D)}
    if not config.remove_rmsnorm:
        shapes["ln_final.weight"] = (D,)
    for i in range(config.num_layers):
        for n in ("q_proj", "k_proj", "v_proj", "output_proj"):
            shapes[f"layers.{i}.attn.{n}.weight"] = (D, D)
        shapes[f"layers.{i}.ffn.w1.weight"] = (F, D)
        shapes[f"layers.{i}.ffn.w2.weight"] = (D, F)
        if config.ffn_type == "swiglu":
            shapes[f"layers.{i}.ffn.w3.weight"] = (F, D)
        if not config.remove_rmsnorm:
            shapes[f"layers.{i}.ln1.weight"] = shapes[f"layers.{i}.ln2.weight"] = (D,)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("overrides", [{}, dict(ffn_type="silu"), dict(remove_rmsnorm=True)])
def test_exact_round_trip_both_ways(overrides):
    config = dataclasses.replace(CFG, **overrides)
    sd = random_state_dict(config)
    params = state_dict_to_params(sd, config)
    back = params_to_state_dict(params, config)
    assert set(back) == set(sd)
    for k in sd:
        assert back[k].dtype == np.float32 and isinstance(back[k], np.ndarray) and back[k].flags.writeable
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)
    p0 = model.init_params(config, jax.random.PRNGKey(0))
    p1 = state_dict_to_params(params_to_state_dict(p0, config), config)
    assert jax.tree_util.tree_structure(p0) == jax.tree_util.tree_structure(p1)
    for a, b in zip(jax.tree_util.tree_leaves(p0), jax.tree_util.tree_leaves(p1)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_layout_qkv_rows_and_layer_stacking():
    sd = random_state_dict(CFG)
    p = state_dict_to_params(sd, CFG)
    D = CFG.d_model
    qkv = np.asarray(p["layers"]["attn"]["qkv_proj"])
    assert qkv.shape == (3, 3 * D, D)
    np.testing.assert_array_equal(qkv[2, :D], sd["layers.2.attn.q_proj.weight"])
    np.testing.assert_array_equal(qkv[1, D:2 * D], sd["layers.1.attn.k_proj.weight"])
    np.testing.assert_array_equal(qkv[0, 2 * D:], sd["layers.0.attn.v_proj.weight"])
    np.testing.assert_array_equal(np.asarray(p["layers"]["ffn"]["w2"][1]), sd["layers.1.ffn.w2.weight"])
    np.testing.assert_array_equal(np.asarray(p["layers"]["ln2"][2]), sd["layers.2.ln2.weight"])


def test_torch_compile_prefix_accepted():
    sd = random_state_dict(CFG)
    prefixed = {"_orig_mod." + k: v for k, v in sd.items()}
    p = state_dict_to_params(prefixed, CFG)
    np.testing.assert_array_equal(np.asarray(p["lm_head"]), sd["lm_head.weight"])


def test_errors_list_every_problem():
    sd = random_state_dict(CFG)
    del sd["layers.1.ln1.weight"], sd["lm_head.weight"]
    sd["layers.0.attn.bias"] = np.zeros(3, np.float32)
    sd["layers.2.ffn.w3.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError) as e:
        state_dict_to_params(sd, CFG)
    msg = str(e.value)
    for needle in ("layers.1.ln1.weight", "lm_head.weight", "layers.0.attn.bias", "layers.2.ffn.w3.weight",
                   "(3, 3)", "(20, 12)"):
        assert needle in msg, needle


def test_wrong_config_is_an_error():
    sd = random_state_dict(CFG)
    with pytest.raises(ValueError, match="layers.3"):
        state_dict_to_params(sd, dataclasses.replace(CFG, num_layers=4))
    with pytest.raises(ValueError, match="unknown keys.*w3"):
        state_dict_to_params(sd, dataclasses.replace(CFG, ffn_type="silu"))
    with pytest.raises(ValueError):
        params_to_state_dict(state_dict_to_params(sd, CFG), dataclasses.replace(CFG, d_model=15, num_heads=5,
                                                                                 remove_rope=True))


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    sd = random_state_dict(CFG)
    tsd = {k: torch.from_numpy(v).requires_grad_(True) for k, v in sd.items()}
    tsd["lm_head.weight"] = tsd["lm_head.weight"].detach().to(torch.bfloat16)
    p = state_dict_to_params(tsd, CFG)
    np.testing.assert_array_equal(np.asarray(p["token_embeddings"]), sd["token_embeddings.weight"])
    np.testing.assert_allclose(np.asarray(p["lm_head"]), sd["lm_head.weight"], rtol=1e-2)
