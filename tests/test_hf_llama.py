"""A CS336 state dict converted to HF transformers' LlamaForCausalLM gives the same logits as jaxlm.

HF's RoPE rotates halves (feature j with j + d/2) where CS336 rotates adjacent pairs (2k, 2k+1), so each
head's Q and K projection rows are permuted to [0, 2, 4, ..., 1, 3, 5, ...] for HF; q.k is unchanged.
Needs the `bench` extra (torch, transformers); skipped without it.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm import model
from jaxlm.config import ModelConfig
from jaxlm.state_dict import params_to_state_dict, state_dict_to_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CFG = ModelConfig(vocab_size=97, context_length=32, d_model=48, num_layers=2, num_heads=3, d_ff=64,
                  rope_theta=500.0)


def halves_permutation(num_heads, head_dim):
    """Row order turning pairwise-RoPE Q/K rows into rotate_half order, head by head."""
    per_head = np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])
    return np.concatenate([h * head_dim + per_head for h in range(num_heads)])


def to_hf(sd, config):
    perm = halves_permutation(config.num_heads, config.head_dim)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    hf = {"model.embed_tokens.weight": t(sd["token_embeddings.weight"]), "model.norm.weight": t(sd["ln_final.weight"]),
          "lm_head.weight": t(sd["lm_head.weight"])}
    for i in range(config.num_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        hf |= {dst + "self_attn.q_proj.weight": t(sd[src + "attn.q_proj.weight"][perm]),
               dst + "self_attn.k_proj.weight": t(sd[src + "attn.k_proj.weight"][perm]),
               dst + "self_attn.v_proj.weight": t(sd[src + "attn.v_proj.weight"]),
               dst + "self_attn.o_proj.weight": t(sd[src + "attn.output_proj.weight"]),
               dst + "mlp.gate_proj.weight": t(sd[src + "ffn.w1.weight"]),
               dst + "mlp.up_proj.weight": t(sd[src + "ffn.w3.weight"]),
               dst + "mlp.down_proj.weight": t(sd[src + "ffn.w2.weight"]),
               dst + "input_layernorm.weight": t(sd[src + "ln1.weight"]),
               dst + "post_attention_layernorm.weight": t(sd[src + "ln2.weight"])}
    return hf


def hf_model(config):
    hf_cfg = transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, intermediate_size=config.d_ff,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads, max_position_embeddings=config.context_length,
        rms_norm_eps=config.eps, rope_theta=config.rope_theta, hidden_act="silu", tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False)
    m = transformers.LlamaForCausalLM(hf_cfg).eval()
    m.config._attn_implementation = "eager"
    return m


def test_logits_equal_hf_llama():
    params = model.init_params(CFG, jax.random.PRNGKey(0))
    # non-trivial gains so that the norms' weights are exercised too
    params["layers"]["ln1"] = params["layers"]["ln1"] + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (2, 48))
    params["ln_final"] = params["ln_final"] - 0.2
    sd = params_to_state_dict(params, CFG)
    hf = hf_model(CFG)
    missing, unexpected = hf.load_state_dict(to_hf(sd, CFG), strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    ids = np.random.default_rng(0).integers(0, CFG.vocab_size, size=(2, 20))
    with torch.no_grad():
        expected = hf(input_ids=torch.from_numpy(ids)).logits.numpy()
    ours = model.forward(state_dict_to_params(sd, CFG), jnp.asarray(ids), CFG)
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4, rtol=1e-4)
    # the permutation matters: HF with the CS336 rows as they are computes something else
    unpermuted = {f"model.layers.{i}.self_attn.{n}_proj.weight":
                  torch.from_numpy(sd[f"layers.{i}.attn.{n}_proj.weight"]) for i in range(CFG.num_layers) for n in "qk"}
    hf.load_state_dict(unpermuted, strict=False)
    with torch.no_grad():
        different = hf(input_ids=torch.from_numpy(ids)).logits.numpy()
    assert np.abs(different - expected).max() > 1e-3
