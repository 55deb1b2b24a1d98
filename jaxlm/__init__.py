"""jaxlm: CS336 Assignment 1 in JAX.

Imports are lazy (PEP 562) so that `import jaxlm.corpus` and the CLIs' --help do not pay for JAX.
"""
import importlib

_EXPORTS = {
    "ModelConfig": "jaxlm.config",
    "init_params": "jaxlm.model",
    "forward": "jaxlm.model",
    "TransformerLM": "jaxlm.model",
    "state_dict_to_params": "jaxlm.state_dict",
    "params_to_state_dict": "jaxlm.state_dict",
    "cross_entropy": "jaxlm.losses",
    "perplexity": "jaxlm.losses",
    "adamw": "jaxlm.optim",
    "cosine_schedule": "jaxlm.optim",
    "clip_by_global_norm": "jaxlm.optim",
    "get_batch": "jaxlm.data",
    "save_checkpoint": "jaxlm.checkpoint",
    "load_checkpoint": "jaxlm.checkpoint",
    "load_params": "jaxlm.checkpoint",
    "generate": "jaxlm.decode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'jaxlm' has no attribute {name!r}")


def __dir__():
    return __all__
