"""Drop-in `tests/adapters.py` for CS336's assignment1-basics test suite, backed by jaxlm.

    cp scripts/cs336_adapters.py /path/to/assignment1-basics/tests/adapters.py
    cd /path/to/assignment1-basics && uv pip install -e /path/to/jaxlm && uv run pytest

The official tests pass torch tensors and expect torch tensors back; this file only converts between the
two (torch -> numpy -> jaxlm.cs336 -> numpy -> torch). AdamW is a torch Optimizer whose update is jaxlm's
optax transformation; its per-parameter state lives in torch's `optimizer.state` (`step`, `exp_avg`,
`exp_avg_sq`) so torch's own state_dict machinery works on it.
"""
from __future__ import annotations

import numpy as np
import optax
import torch

from jaxlm import cs336
from jaxlm.optim import AdamWState


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _torch(x):
    return torch.from_numpy(np.array(x))


def _numpy_args(fn):
    """Wrap a jaxlm.cs336 function: torch tensors (also inside dicts) in, a torch tensor out."""
    def wrapped(*args, **kwargs):
        conv = lambda v: {k: _np(w) for k, w in v.items()} if isinstance(v, dict) else (
            _np(v) if isinstance(v, torch.Tensor) else v)
        return _torch(fn(*map(conv, args), **{k: conv(v) for k, v in kwargs.items()}))
    wrapped.__name__ = fn.__name__
    return wrapped


run_linear = _numpy_args(cs336.run_linear)
run_embedding = _numpy_args(cs336.run_embedding)
run_swiglu = _numpy_args(cs336.run_swiglu)
run_scaled_dot_product_attention = _numpy_args(cs336.run_scaled_dot_product_attention)
run_multihead_self_attention = _numpy_args(cs336.run_multihead_self_attention)
run_multihead_self_attention_with_rope = _numpy_args(cs336.run_multihead_self_attention_with_rope)
run_rope = _numpy_args(cs336.run_rope)
run_transformer_block = _numpy_args(cs336.run_transformer_block)
run_transformer_lm = _numpy_args(cs336.run_transformer_lm)
run_rmsnorm = _numpy_args(cs336.run_rmsnorm)
run_silu = _numpy_args(cs336.run_silu)
run_softmax = _numpy_args(cs336.run_softmax)
run_cross_entropy = _numpy_args(cs336.run_cross_entropy)
run_get_lr_cosine_schedule = cs336.run_get_lr_cosine_schedule
get_tokenizer = cs336.get_tokenizer
run_train_bpe = cs336.run_train_bpe


def run_get_batch(dataset, batch_size, context_length, device):
    cs336._data.resolve_device(device)  # jaxlm's error for absent devices ("cuda:99")
    x, y = cs336.run_get_batch(dataset, batch_size, context_length, "cpu")
    return _torch(x).long().to(device), _torch(y).long().to(device)


def run_gradient_clipping(parameters, max_l2_norm):
    params = [p for p in parameters if p.grad is not None]
    clipped = cs336.run_gradient_clipping([_np(p.grad) for p in params], max_l2_norm)
    for p, g in zip(params, clipped):
        p.grad.copy_(_torch(g))


class JaxAdamW(torch.optim.Optimizer):
    """torch.optim interface over jaxlm.optim.adamw (one transformation per parameter)."""

    def __init__(self, params, lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            tx = cs336.get_adamw_cls()(group["lr"], group["weight_decay"], group["betas"], group["eps"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                theta = _np(p)
                opt_state = AdamWState(
                    count=np.int32(s.get("step", 0)),
                    m=_np(s["exp_avg"]) if "exp_avg" in s else np.zeros_like(theta),
                    v=_np(s["exp_avg_sq"]) if "exp_avg_sq" in s else np.zeros_like(theta))
                updates, new = tx.update(_np(p.grad), opt_state, theta)
                p.copy_(_torch(optax.apply_updates(theta, updates)))
                s["step"], s["exp_avg"], s["exp_avg_sq"] = int(new.count), _torch(new.m), _torch(new.v)
        return loss


def get_adamw_cls():
    return JaxAdamW


def run_save_checkpoint(model, optimizer, iteration, out):
    """jaxlm's atomic one-file checkpoint of the model's and the optimizer's tensors."""
    params = {k: _np(v) for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    opt_state = {str(i): {k: _np(v) for k, v in st.items() if isinstance(v, torch.Tensor)}
                 for i, st in opt["state"].items()}
    steps = {str(i): int(st.get("step", 0)) for i, st in opt["state"].items()}
    cs336._checkpoint.save_checkpoint(params, opt_state, iteration, out,
                                      extra={"param_groups": opt["param_groups"], "steps": steps})


def run_load_checkpoint(src, model, optimizer):
    extra = cs336._checkpoint.read_extra(src)
    if hasattr(src, "seek"):
        src.seek(0)
    params = {k: _np(v) for k, v in model.state_dict().items()}
    template = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            i = str(len(template))
            if i in extra["steps"]:
                template[i] = {"exp_avg": _np(p), "exp_avg_sq": _np(p)}
    params, opt_state, iteration = cs336._checkpoint.load_checkpoint(src, params, template)
    model.load_state_dict({k: _torch(v) for k, v in params.items()})
    state = {int(i): {"step": extra["steps"][i], **{k: _torch(v) for k, v in st.items()}}
             for i, st in opt_state.items()}
    optimizer.load_state_dict({"state": state, "param_groups": extra["param_groups"]})
    return iteration
