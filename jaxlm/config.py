"""The model's hyperparameters: one frozen dataclass, validated on construction."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

FFN_TYPES = ("swiglu", "silu")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # number of token ids, specials included
    context_length: int  # longest sequence the model (and its RoPE tables) handles
    d_model: int  # residual stream width
    num_layers: int  # Transformer blocks
    num_heads: int  # attention heads; d_model / num_heads is the head dim
    d_ff: int  # FFN hidden width (about 8/3 d_model for SwiGLU, 4 d_model for SiLU)
    rope_theta: float = 10000.0  # RoPE base
    eps: float = 1e-5  # RMSNorm epsilon
    remove_rmsnorm: bool = False  # ablation: no norms at all
    use_post_norm: bool = False  # ablation: z = norm(x + attn(x)); y = norm(z + ffn(z))
    remove_rope: bool = False  # ablation: no positional information (NoPE)
    ffn_type: Literal["swiglu", "silu"] = "swiglu"  # "silu" is the ungated w2(silu(w1 x)) ablation
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype; parameters stay float32

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"ModelConfig.d_model={self.d_model} is not divisible by num_heads={self.num_heads}: "
                "heads split d_model evenly")
        if not self.remove_rope and self.head_dim % 2:
            raise ValueError(
                f"ModelConfig head dim d_model/num_heads={self.head_dim} is odd: RoPE rotates pairs of "
                "features, so it needs an even head dim (or remove_rope=True)")
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 0):
            raise ValueError(f"ModelConfig.rope_theta must be a positive number, got {self.rope_theta!r}")
        if not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise ValueError(f"ModelConfig.eps must be a positive number, got {self.eps!r}")
        if self.remove_rmsnorm and self.use_post_norm:
            raise ValueError(
                "ModelConfig.remove_rmsnorm and use_post_norm are both set: post-norm moves the norms "
                "that remove_rmsnorm deletes; choose one ablation")
        if self.ffn_type not in FFN_TYPES:
            raise ValueError(f"ModelConfig.ffn_type must be one of {FFN_TYPES}, got {self.ffn_type!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from a dict (e.g. a checkpoint's metadata); unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """The JSON object in file `path`; a ValueError naming `what` (e.g. "--config") and the problem."""
    try:
        with open(path) as fh:
            value = json.load(fh)
    except OSError as e:
        raise ValueError(f"cannot read {what} {path!r}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path!r} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} {path!r} must hold a JSON object")
    return value
