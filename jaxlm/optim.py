"""AdamW (the handout's Algorithm 1), the cosine learning-rate schedule and global-norm clipping.

All three are pure and jit-safe over arbitrary pytrees. `adamw` is an `optax.GradientTransformation`
so it composes with `optax.apply_updates`, but the update rule is written out here, not borrowed.

Step-count convention: the optimizer state's `count` is the number of updates already applied
(0 after `init`). An update first sets `t = count + 1` (the handout's 1-based t, used for bias
correction) and evaluates a learning-rate schedule at `t - 1` (0-based iteration index, like optax and
`cosine_schedule`): the first update uses `lr(0)`, the update that produces step s+1 uses `lr(s)`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

Schedule = Callable[[Any], Any]
ScalarOrSchedule = Union[float, Schedule]


class AdamWState(NamedTuple):
    count: jax.Array  # int32 scalar: updates applied so far (the handout's t after the update)
    m: Any  # first-moment estimate, same pytree as params
    v: Any  # second-moment estimate, same pytree as params


def _lr_at(lr: ScalarOrSchedule, step):
    return lr(step) if callable(lr) else lr


def adamw(lr: ScalarOrSchedule, betas=(0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 0.01) -> optax.GradientTransformation:
    """AdamW from the handout's Algorithm 1 as an optax transformation.

    For t = 1, 2, ...:  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    alpha_t = lr_t sqrt(1 - b2^t) / (1 - b1^t);
    update = -alpha_t m / (sqrt(v) + eps) - lr_t * weight_decay * theta
    where theta is the parameter *before* this step (decoupled decay, PyTorch's and optax's order; the
    handout applies it after the Adam step, which differs by O(lr^2 * weight_decay) per step).
    Note eps is added to sqrt(v) of the raw second moment as in the handout; PyTorch and optax add it to
    the bias-corrected sqrt(v / (1 - b2^t)), which differs only when sqrt(v) is comparable to eps.
    `lr` is a float or a schedule `step -> lr` called with the 0-based step t-1 (see module docstring).
    """
    b1, b2 = betas
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ValueError(f"adamw betas must lie in [0, 1), got {betas!r}")
    if not callable(lr) and not lr >= 0:
        raise ValueError(f"adamw learning rate must be >= 0, got {lr!r}")
    if not eps >= 0:
        raise ValueError(f"adamw eps must be >= 0, got {eps!r}")
    if not weight_decay >= 0:
        raise ValueError(f"adamw weight_decay must be >= 0, got {weight_decay!r}")

    def init_fn(params):
        # zeros_like keeps each parameter's dtype and sharding (replicated params -> replicated moments).
        return AdamWState(count=jnp.zeros([], jnp.int32), m=jax.tree.map(jnp.zeros_like, params),
                          v=jax.tree.map(jnp.zeros_like, params))

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError("adamw.update needs the current params (for weight decay): call "
                             "opt.update(grads, opt_state, params)")
        step = state.count  # 0-based iteration index of this update
        t = (step + 1).astype(jnp.float32)  # the handout's 1-based t
        lr_t = jnp.asarray(_lr_at(lr, step), jnp.float32)
        m = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.m, grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.v, grads)
        alpha_t = lr_t * jnp.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)

        def leaf_update(m, v, p):
            u = -alpha_t * m / (jnp.sqrt(v) + eps) - lr_t * weight_decay * p
            return u.astype(jnp.result_type(p))

        updates = jax.tree.map(leaf_update, m, v, params)
        return updates, AdamWState(count=step + 1, m=m, v=v)

    return optax.GradientTransformation(init_fn, update_fn)


def cosine_schedule(t, max_lr, min_lr, warmup_iters, cosine_cycle_iters):
    """Linear warmup then cosine decay then constant, the handout's schedule.

    t < T_w: t / T_w * max_lr;  T_w <= t <= T_c: min_lr + (1 + cos(pi (t - T_w) / (T_c - T_w))) / 2
    * (max_lr - min_lr);  t > T_c: min_lr. A Python int gives a Python float; a (traced) array gives a
    float32 array (evaluated with jnp.where, so it is jit-safe).
    """
    if warmup_iters < 0 or cosine_cycle_iters < warmup_iters:
        raise ValueError(f"cosine_schedule needs 0 <= warmup_iters <= cosine_cycle_iters, got "
                         f"warmup_iters={warmup_iters}, cosine_cycle_iters={cosine_cycle_iters}")
    decay_iters = cosine_cycle_iters - warmup_iters
    if isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool):
        if t < warmup_iters:
            return float(t / warmup_iters * max_lr)
        if t <= cosine_cycle_iters:
            progress = (t - warmup_iters) / decay_iters if decay_iters else 0.0
            return float(min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr))
        return float(min_lr)
    t = jnp.asarray(t, jnp.float32)
    warm = t / max(warmup_iters, 1) * max_lr
    progress = (t - warmup_iters) / max(decay_iters, 1)
    cosine = min_lr + 0.5 * (1.0 + jnp.cos(jnp.pi * progress)) * (max_lr - min_lr)
    return jnp.where(t < warmup_iters, warm, jnp.where(t <= cosine_cycle_iters, cosine, min_lr))


def make_schedule(max_lr, min_lr, warmup_iters, cosine_cycle_iters) -> Schedule:
    """`step -> lr` closure over `cosine_schedule` (validated now, not at the first step)."""
    cosine_schedule(0, max_lr, min_lr, warmup_iters, cosine_cycle_iters)
    return lambda step: cosine_schedule(step, max_lr, min_lr, warmup_iters, cosine_cycle_iters)


def global_norm(tree):
    """L2 norm of all leaves taken together, accumulated in float32."""
    leaves = jax.tree.leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


def clip_by_global_norm(grads, max_norm, eps: float = 1e-6):
    """Scale `grads` by max_norm / (norm + eps) when their global norm exceeds max_norm.

    The handout's (and torch.nn.utils.clip_grad_norm_'s) rule. Returns `(clipped_grads, norm)`, norm being
    the pre-clipping global norm (float32 scalar). Leaves keep their dtypes.
    """
    norm = global_norm(grads)
    scale = jnp.where(norm > max_norm, max_norm / (norm + eps), 1.0)
    clipped = jax.tree.map(lambda g: (g * scale).astype(jnp.result_type(g)), grads)
    return clipped, norm
