"""Convert between the stacked params pytree and CS336's flat PyTorch state dict.

CS336 keys: `token_embeddings.weight`, `layers.{i}.attn.{q,k,v,output}_proj.weight`, `layers.{i}.ln1.weight`,
`layers.{i}.ffn.{w1,w2,w3}.weight`, `layers.{i}.ln2.weight`, `ln_final.weight`, `lm_head.weight`, every
linear `(d_out, d_in)` (the same layout as the params). A `_orig_mod.` prefix (torch.compile) is accepted.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlm.config import ModelConfig

COMPILE_PREFIX = "_orig_mod."


def layer_state_dict_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """One block's keys (without the `layers.{i}.` prefix) with their shapes."""
    D, F = config.d_model, config.d_ff
    shapes = {f"attn.{n}.weight": (D, D) for n in ("q_proj", "k_proj", "v_proj", "output_proj")}
    if not config.remove_rmsnorm:
        shapes["ln1.weight"] = shapes["ln2.weight"] = (D,)
    shapes["ffn.w1.weight"], shapes["ffn.w2.weight"] = (F, D), (D, F)
    if config.ffn_type == "swiglu":
        shapes["ffn.w3.weight"] = (F, D)
    return shapes


def state_dict_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every key the config's state dict has, with its shape."""
    V, D = config.vocab_size, config.d_model
    shapes = {"token_embeddings.weight": (V, D)}
    layer = layer_state_dict_shapes(config)
    for i in range(config.num_layers):
        shapes.update({f"layers.{i}.{k}": shape for k, shape in layer.items()})
    if not config.remove_rmsnorm:
        shapes["ln_final.weight"] = (D,)
    shapes["lm_head.weight"] = (V, D)
    return shapes


def _to_numpy(value) -> np.ndarray:
    """numpy float32 from a numpy/JAX array or a torch tensor (duck-typed: torch is never imported)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    return np.array(value, dtype=np.float32)  # a writable copy, never a view of a JAX buffer


def _checked(state_dict: dict, expected: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The state dict with the prefix stripped and values as float32 numpy, or ValueError listing all problems."""
    sd = {(k[len(COMPILE_PREFIX):] if k.startswith(COMPILE_PREFIX) else k): v for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(sd))
    unknown = sorted(set(sd) - set(expected))
    arrays = {k: _to_numpy(sd[k]) for k in expected if k in sd}
    misshaped = [f"{k}: got {arrays[k].shape}, expected {shape}"
                 for k, shape in expected.items() if k in arrays and arrays[k].shape != shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unknown:
        problems.append(f"unknown keys {unknown}")
    if misshaped:
        problems.append(f"mis-shaped {misshaped}")
    if problems:
        raise ValueError("state dict does not match the config: " + "; ".join(problems))
    return arrays


def _layer_params(sd: dict[str, np.ndarray], prefix: str) -> dict:
    """One block's params (unstacked, numpy) from checked state-dict entries under `prefix`."""
    attn = {"qkv_proj": np.concatenate([sd[f"{prefix}attn.{n}_proj.weight"] for n in "qkv"], axis=0),
            "output_proj": sd[f"{prefix}attn.output_proj.weight"]}
    lp = {"attn": attn,
          "ffn": {n: sd[f"{prefix}ffn.{n}.weight"] for n in ("w1", "w2", "w3") if f"{prefix}ffn.{n}.weight" in sd}}
    for n in ("ln1", "ln2"):
        if f"{prefix}{n}.weight" in sd:
            lp[n] = sd[f"{prefix}{n}.weight"]
    return lp


def layer_state_dict_to_params(weights: dict, config: ModelConfig) -> dict:
    """One block's CS336 weights (`attn.q_proj.weight`, `ln1.weight`, ...) -> that block's params
    (the stacked layout without the leading L axis), as float32 JAX arrays."""
    lp = _layer_params(_checked(weights, layer_state_dict_shapes(config)), "")
    return jax.tree_util.tree_map(jnp.asarray, lp)


def state_dict_to_params(state_dict: dict, config: ModelConfig) -> dict:
    """CS336 state dict (numpy, JAX or torch values) -> params pytree of float32 JAX arrays."""
    sd = _checked(state_dict, state_dict_shapes(config))
    per_layer = [_layer_params(sd, f"layers.{i}.") for i in range(config.num_layers)]
    params = {"token_embeddings": jnp.asarray(sd["token_embeddings.weight"]),
              "layers": jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *per_layer),
              "lm_head": jnp.asarray(sd["lm_head.weight"])}
    if not config.remove_rmsnorm:
        params["ln_final"] = jnp.asarray(sd["ln_final.weight"])
    return params


def params_to_state_dict(params: dict, config: ModelConfig) -> dict[str, np.ndarray]:
    """params pytree -> CS336 state dict of float32 numpy arrays (exact inverse of state_dict_to_params)."""
    layers = params["layers"]
    sd = {"token_embeddings.weight": _to_numpy(params["token_embeddings"])}
    qkv = _to_numpy(layers["attn"]["qkv_proj"])
    out = _to_numpy(layers["attn"]["output_proj"])
    if qkv.shape[0] != config.num_layers or qkv.shape[1] % 3:
        raise ValueError(f"params qkv_proj shape {qkv.shape} does not fit num_layers={config.num_layers}")
    ffn = {n: _to_numpy(w) for n, w in layers["ffn"].items()}
    norms = {n: _to_numpy(layers[n]) for n in ("ln1", "ln2") if n in layers}
    for i in range(config.num_layers):
        pre = f"layers.{i}."
        for name, w in zip(("q_proj", "k_proj", "v_proj"), np.split(qkv[i], 3, axis=0)):
            sd[f"{pre}attn.{name}.weight"] = w
        sd[f"{pre}attn.output_proj.weight"] = out[i]
        for n, w in norms.items():
            sd[f"{pre}{n}.weight"] = w[i]
        for n, w in ffn.items():
            sd[f"{pre}ffn.{n}.weight"] = w[i]
    if "ln_final" in params:
        sd["ln_final.weight"] = _to_numpy(params["ln_final"])
    sd["lm_head.weight"] = _to_numpy(params["lm_head"])
    _checked(sd, state_dict_shapes(config))  # the params must fit the config exactly
    return sd
