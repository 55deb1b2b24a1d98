"""AdamW against Algorithm 1 in float64 numpy, optax.adamw and torch.optim.AdamW; schedule; clipping."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlm import optim


def numpy_adamw(theta0, grads_seq, lr_at, b1, b2, eps, wd):
    """Algorithm 1 of the handout in float64, decay applied to the pre-step theta (PyTorch's order)."""
    theta = {k: np.asarray(v, np.float64) for k, v in theta0.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    for t, grads in enumerate(grads_seq, start=1):
        lr = lr_at(t - 1)
        for k in theta:
            g = np.asarray(grads[k], np.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            theta[k] = theta[k] - alpha * m[k] / (np.sqrt(v[k]) + eps) - lr * wd * theta[k]
    return theta


def _problem(seed=0, steps=30):
    rng = np.random.default_rng(seed)
    theta0 = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=(5,)).astype(np.float32)}
    grads_seq = [{k: rng.normal(size=v.shape).astype(np.float32) * 0.5 for k, v in theta0.items()}
                 for _ in range(steps)]
    return theta0, grads_seq


def _run(opt, theta0, grads_seq):
    params = jax.tree.map(jnp.asarray, theta0)
    state = opt.init(params)

    @jax.jit
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for grads in grads_seq:
        params, state = step(params, state, grads)
    return params, state


@pytest.mark.parametrize("schedule", [False, True])
def test_adamw_matches_numpy_algorithm_1(schedule):
    theta0, grads_seq = _problem()
    lr = optim.make_schedule(0.05, 0.005, 5, 20) if schedule else 0.01
    lr_at = (lambda s: optim.cosine_schedule(s, 0.05, 0.005, 5, 20)) if schedule else (lambda s: 0.01)
    params, state = _run(optim.adamw(lr, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), theta0, grads_seq)
    want = numpy_adamw(theta0, grads_seq, lr_at, 0.8, 0.95, 1e-6, 0.1)
    assert int(state.count) == len(grads_seq)
    for k in want:
        np.testing.assert_allclose(np.asarray(params[k]), want[k], rtol=2e-5, atol=2e-6)


def test_adamw_matches_optax_adamw():
    # optax adds eps to the bias-corrected sqrt(v_hat); Algorithm 1 to sqrt(v). With |g| >> eps the two
    # agree to float32 rounding; weight decay is lr * wd * theta on the pre-step params in both.
    theta0, grads_seq = _problem(seed=1, steps=50)
    ours, _ = _run(optim.adamw(3e-3, weight_decay=0.05), theta0, grads_seq)
    ref, _ = _run(optax.adamw(3e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05), theta0, grads_seq)
    for k in theta0:
        np.testing.assert_allclose(np.asarray(ours[k]), np.asarray(ref[k]), rtol=1e-6, atol=1e-7)


def test_adamw_state_is_a_namedtuple_with_moments():
    params = {"a": jnp.ones((2,)), "b": [jnp.zeros((1, 3))]}
    state = optim.adamw(1e-3).init(params)
    assert isinstance(state, optim.AdamWState) and int(state.count) == 0
    assert jax.tree.structure(state.m) == jax.tree.structure(params)
    with pytest.raises(ValueError, match="needs the current params"):
        optim.adamw(1e-3).update(params, state)
    with pytest.raises(ValueError, match="betas"):
        optim.adamw(1e-3, betas=(1.0, 0.9))


def test_adamw_matches_torch_on_cs336_problem():
    torch = pytest.importorskip("torch")
    torch.manual_seed(42)
    model = torch.nn.Linear(3, 2, bias=False)
    w0 = model.weight.detach().numpy().copy()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)
    xs = []
    for _ in range(1000):
        opt.zero_grad()
        x = torch.rand(model.in_features)
        xs.append(x.numpy().copy())
        y = torch.tensor([x[0] + x[1], -x[2]])
        ((y - model(x)) ** 2).sum().backward()
        opt.step()
    want = model.weight.detach().numpy()

    ours = optim.adamw(1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

    def loss(w, x):
        y = jnp.stack([x[0] + x[1], -x[2]])
        return jnp.sum((y - w @ x) ** 2)

    def step(carry, x):
        w, state = carry
        updates, state = ours.update(jax.grad(loss)(w, x), state, w)
        return (optax.apply_updates(w, updates), state), None

    w = jnp.asarray(w0)
    (w, _), _ = jax.lax.scan(step, (w, ours.init(w)), jnp.asarray(np.stack(xs)))
    np.testing.assert_allclose(np.asarray(w), want, atol=1e-4)
    assert not np.allclose(w0, want, atol=1e-2)  # the weights moved: the comparison is not vacuous


def _schedule_formula(t, max_lr, min_lr, tw, tc):
    if t < tw:
        return t / tw * max_lr
    if t <= tc:
        return min_lr + (1 + math.cos(math.pi * (t - tw) / (tc - tw))) / 2 * (max_lr - min_lr)
    return min_lr


def test_cosine_schedule_values_python_and_traced():
    want = [_schedule_formula(t, 1.0, 0.1, 7, 21) for t in range(25)]
    got = [optim.cosine_schedule(t, 1.0, 0.1, 7, 21) for t in range(25)]
    assert all(isinstance(x, float) for x in got)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    traced = jax.jit(lambda t: optim.cosine_schedule(t, 1.0, 0.1, 7, 21))(jnp.arange(25))
    np.testing.assert_allclose(np.asarray(traced), want, rtol=1e-6, atol=1e-7)
    # The handout's landmarks: end of warmup, mid-cosine, floor.
    assert got[7] == 1.0 and abs(got[14] - 0.55) < 1e-12 and got[21:] == [0.1] * 4
    sched = optim.make_schedule(1.0, 0.1, 7, 21)
    assert sched(3) == got[3]
    with pytest.raises(ValueError, match="warmup_iters"):
        optim.make_schedule(1.0, 0.1, 10, 5)


def test_clip_by_global_norm_matches_numpy():
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": [rng.normal(size=(5,)).astype(np.float32)]}
    flat = np.concatenate([grads["a"].ravel(), grads["b"][0].ravel()]).astype(np.float64)
    norm = np.sqrt(np.sum(flat ** 2))
    for max_norm in (norm / 3, norm * 2):
        clipped, got_norm = optim.clip_by_global_norm(jax.tree.map(jnp.asarray, grads), max_norm)
        scale = max_norm / (norm + 1e-6) if norm > max_norm else 1.0
        np.testing.assert_allclose(float(got_norm), norm, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(clipped["a"]), grads["a"] * scale, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(clipped["b"][0]), grads["b"][0] * scale, rtol=1e-6)
    bf16 = {"x": jnp.full((4,), 10.0, jnp.bfloat16)}
    clipped, _ = optim.clip_by_global_norm(bf16, 1.0)
    assert clipped["x"].dtype == jnp.bfloat16
