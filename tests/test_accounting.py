"""jaxlm.accounting against the model itself: parameter counts of real pytrees, FLOPs counted from the traced
program's matrix multiplies, memory arithmetic, and the CLI."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import pytest

from jaxlm import accounting, model
from jaxlm.config import ModelConfig

CFG = ModelConfig(vocab_size=37, context_length=12, d_model=16, num_layers=3, num_heads=2, d_ff=24)
VARIANTS = [CFG, dataclasses.replace(CFG, ffn_type="silu"), dataclasses.replace(CFG, remove_rmsnorm=True)]


def matmul_flops(jaxpr) -> int:
    """2 * (output size) * (contracted size) summed over every dot_general, scans counted length times."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
        times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else [p]):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    total += times * matmul_flops(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    total += times * matmul_flops(sub)
    return total


def abstract_params(config):
    return jax.eval_shape(lambda: model.init_params(config, jax.random.PRNGKey(0)))


@pytest.mark.parametrize("config", VARIANTS, ids=["swiglu", "silu", "no_norm"])
def test_param_count_matches_the_pytree(config):
    n = sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(abstract_params(config)))
    assert accounting.param_count(config) == n


def test_gpt2_xl_parameter_count():
    # 2 * 50257 * 1600 (embeddings, lm_head) + 48 * (4 * 1600^2 + 3 * 1600 * 6400 + 2 * 1600) + 1600
    assert accounting.param_count(accounting.preset("gpt2-xl")) == 2_127_057_600


@pytest.mark.parametrize("config", VARIANTS, ids=["swiglu", "silu", "no_norm"])
@pytest.mark.parametrize("seq_len", [12, 5])
def test_forward_flops_equal_the_traced_matmuls(config, seq_len):
    ids = jnp.zeros((1, seq_len), jnp.int32)
    jaxpr = jax.make_jaxpr(lambda p: model.forward(p, ids, config))(abstract_params(config))
    flops = accounting.forward_flops(config, seq_len)
    assert flops["total"] == matmul_flops(jaxpr.jaxpr)
    assert flops["total"] == sum(v for k, v in flops.items() if k != "total")
    per_token = accounting.forward_flops_per_token(config, seq_len)
    assert per_token["ffn"] * seq_len == pytest.approx(flops["ffn"])


def test_training_flops_equal_the_traced_backward():
    B = 2
    ids = jnp.zeros((B, CFG.context_length), jnp.int32)
    loss = lambda p: model.forward(p, ids, CFG).sum()
    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss))(abstract_params(CFG))
    assert accounting.train_flops_per_step(CFG, B) == matmul_flops(jaxpr.jaxpr)


def test_attention_share_grows_with_context():
    xl, xl_long = accounting.preset("gpt2-xl"), accounting.preset("gpt2-xl", 16384)
    share = lambda c: (lambda f: (f["attn_scores"] + f["attn_values"]) / f["total"])(accounting.forward_flops(c))
    assert share(xl) < 0.1 < 0.5 < share(xl_long)


def test_training_memory():
    P = accounting.param_count(CFG)
    m1, m3 = accounting.training_memory(CFG, 1), accounting.training_memory(CFG, 3)
    assert m1["parameters"] == m1["gradients"] == 4 * P and m1["adamw_state"] == 8 * P
    assert m3["activations"] == 3 * m1["activations"]
    assert m1["total"] == sum(v for k, v in m1.items() if k != "total")
    # per sequence, as the handout lists them (T=12, D=16, F=24, H=2, V=37, L=3; SwiGLU keeps 4 F-wide tensors)
    T, D, F, H, V, L = 12, 16, 24, 2, 37, 3
    per_block = 2 * T * D + 3 * T * D + 2 * H * T * T + T * D + T * D + 4 * T * F + T * D
    assert m1["activations"] == 4 * (L * per_block + T * D + 2 * T * V)
    limit = 5e6
    b = accounting.max_batch_size(CFG, limit)
    assert accounting.training_memory(CFG, b)["total"] <= limit < accounting.training_memory(CFG, b + 1)["total"]


def test_unknown_preset():
    with pytest.raises(ValueError, match="gpt2-tiny"):
        accounting.preset("gpt2-tiny")


def test_cli_prints_tables(capsys):
    accounting.main(["--preset", "gpt2-small"])
    out = capsys.readouterr().out
    assert f"{accounting.param_count(accounting.preset('gpt2-small')):,} parameters" in out
    assert "| ffn |" in out and "largest batch in 80 GB" in out
    accounting.main([])
    out = capsys.readouterr().out
    assert all(f"### {name}:" in out for name in accounting.PRESETS)
    accounting.main(["--preset", "gpt2-xl", "--context-length", "16384"])
    assert "context 16384" in capsys.readouterr().out
