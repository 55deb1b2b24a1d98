"""The training half of jaxlm.cs336, exercised the way CS336's tests call it (inputs as numpy/torch)."""
import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlm import cs336
from jaxlm.config import ModelConfig
from jaxlm.model import param_shapes


def test_run_cross_entropy_numpy_inputs():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(8, 5)).astype(np.float32) * 10
    targets = rng.integers(0, 5, size=8)
    z = inputs.astype(np.float64)
    log_z = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    want = np.mean(log_z - z[np.arange(8), targets])
    np.testing.assert_allclose(float(cs336.run_cross_entropy(inputs, targets)), want, rtol=1e-6)
    # CS336's large-input check: 1000x the logits stays finite.
    assert np.isfinite(float(cs336.run_cross_entropy(inputs * 1000, targets)))


def test_run_gradient_clipping_list_with_frozen_entry():
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(3, 4)).astype(np.float32), None, rng.normal(size=(2,)).astype(np.float32)]
    norm = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads if g is not None))
    clipped = cs336.run_gradient_clipping(grads, 1e-2)
    assert isinstance(clipped, list) and clipped[1] is None
    for got, g in zip((clipped[0], clipped[2]), (grads[0], grads[2])):
        np.testing.assert_allclose(np.asarray(got), g * (1e-2 / (norm + 1e-6)), rtol=1e-6)


def test_get_adamw_cls_is_a_factory_matching_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3, bias=False)
    w = jnp.asarray(model.weight.detach().numpy())
    opt_t = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-8)
    opt = cs336.get_adamw_cls()(lr=1e-2, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-8)
    assert isinstance(opt, optax.GradientTransformation)
    state = opt.init(w)

    @jax.jit
    def step(w, state, x):
        updates, state = opt.update(jax.grad(lambda w: jnp.sum((w @ x) ** 2))(w), state, w)
        return optax.apply_updates(w, updates), state

    for _ in range(20):
        x = torch.randn(4)
        opt_t.zero_grad()
        (model(x) ** 2).sum().backward()
        opt_t.step()
        w, state = step(w, state, jnp.asarray(x.numpy()))
    np.testing.assert_allclose(np.asarray(w), model.weight.detach().numpy(), atol=1e-5)


def test_run_get_lr_cosine_schedule_landmarks():
    lrs = [cs336.run_get_lr_cosine_schedule(t, 1.0, 0.1, 7, 21) for t in range(25)]
    # The values the issue quotes for (1, 0.1, 7, 21).
    assert lrs[0] == 0 and abs(lrs[1] - 1 / 7) < 1e-12 and lrs[7] == 1.0
    assert abs(lrs[8] - 0.988717) < 1e-6 and abs(lrs[14] - 0.55) < 1e-12 and lrs[21:] == [0.1] * 4


def test_run_get_batch_like_cs336():
    dataset = np.arange(0, 100)
    context_length, batch_size = 7, 32
    starts = []
    for _ in range(200):
        x, y = cs336.run_get_batch(dataset, batch_size, context_length, "cpu")
        assert x.shape == y.shape == (batch_size, context_length)
        np.testing.assert_array_equal(np.asarray(x) + 1, np.asarray(y))
        starts.append(np.asarray(x)[:, 0])
    starts = np.concatenate(starts)
    assert starts.min() == 0 and starts.max() == len(dataset) - context_length - 1
    # Uniform over 93 starts: mean 46, sd of the mean ~ 26.8 / sqrt(6400) ~ 0.34.
    assert abs(starts.mean() - 46) < 2
    with pytest.raises(RuntimeError, match="cuda:99"):
        cs336.run_get_batch(dataset, batch_size, context_length, "cuda:99")


def test_run_save_and_load_checkpoint_with_model_params(tmp_path):
    config = ModelConfig(vocab_size=32, context_length=8, d_model=8, num_layers=2, num_heads=2, d_ff=16)
    rng = np.random.default_rng(0)

    def init(config):  # the model's real params structure, random values (init_params is tested elsewhere)
        return jax.tree.map(lambda shape: jnp.asarray(rng.normal(size=shape), jnp.float32),
                            param_shapes(config), is_leaf=lambda s: isinstance(s, tuple))

    params = init(config)
    opt = cs336.get_adamw_cls()(lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)
    opt_state = opt.init(params)
    updates, opt_state = jax.jit(opt.update)(jax.tree.map(jnp.ones_like, params), opt_state, params)
    params = optax.apply_updates(params, updates)
    for out in (tmp_path / "model.ckpt", io.BytesIO()):
        cs336.run_save_checkpoint(params, opt_state, 1, out)
        if isinstance(out, io.BytesIO):
            out.seek(0)
        template_p = init(config)
        p, o, it = cs336.run_load_checkpoint(out, template_p, opt.init(template_p))
        assert it == 1 and int(o.count) == 1
        for a, b in zip(jax.tree.leaves((p, o)), jax.tree.leaves((params, opt_state)), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
