"""The training run's configuration: `TrainConfig` (one field per `jaxlm.train` flag) and its parsing.

Flags override a `--config FILE.json`, which overrides the defaults. Importing this needs no JAX, so
`jaxlm-train --help` answers at once.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from jaxlm.config import DTYPES, FFN_TYPES, ModelConfig, read_json_object


class ConfigError(ValueError):
    """Bad arguments, configuration or data: the CLI prints the message and exits 2."""


def _field(default, help):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; each field is the CLI flag of the same name (`--train-data` ...)."""
    # Data
    train_data: str | None = _field(None, "training tokens: .npy from tokenizer.encode, or raw .bin "
                                          "(give --data-dtype)")
    val_data: str | None = _field(None, "validation tokens (same formats); absent = no evaluation")
    data_dtype: str | None = _field(None, "dtype of raw .bin token files, e.g. uint16")
    tokenizer: str | None = _field(None, "tokenizer path, stored in checkpoints for jaxlm.generate")
    # Model (see jaxlm.config.ModelConfig)
    vocab_size: int = _field(10_000, "number of token ids")
    context_length: int = _field(256, "tokens per training sequence")
    d_model: int = _field(512, "residual stream width")
    num_layers: int = _field(4, "Transformer blocks")
    num_heads: int = _field(16, "attention heads")
    d_ff: int = _field(1344, "FFN hidden width")
    rope_theta: float = _field(10_000.0, "RoPE base")
    no_rmsnorm: bool = _field(False, "ablation: remove every RMSNorm")
    post_norm: bool = _field(False, "ablation: post-norm blocks instead of pre-norm")
    no_rope: bool = _field(False, "ablation: no position embedding at all (NoPE)")
    ffn: str = _field("swiglu", "FFN type: swiglu, or the ungated silu ablation")
    dtype: str = _field("float32", "compute dtype (parameters and optimizer state stay float32)")
    # Optimisation
    batch_size: int = _field(32, "sequences per step, over all devices (a multiple of their number)")
    max_steps: int = _field(5000, "optimizer updates in the whole run")
    lr: float = _field(1e-3, "peak learning rate (after warmup)")
    min_lr: float = _field(1e-4, "learning rate after the cosine decay")
    warmup_steps: int = _field(100, "linear warmup steps")
    cosine_steps: int | None = _field(None, "step where the cosine decay reaches min_lr (default max_steps)")
    weight_decay: float = _field(0.1, "AdamW decoupled weight decay")
    beta1: float = _field(0.9, "AdamW first-moment decay")
    beta2: float = _field(0.95, "AdamW second-moment decay")
    eps: float = _field(1e-8, "AdamW epsilon")
    grad_clip: float = _field(1.0, "clip gradients to this global L2 norm (0 = no clipping)")
    # Evaluation and logging
    eval_every: int = _field(500, "evaluate every N steps and at the end (0 = never)")
    eval_batches: int = _field(10, "validation batches per evaluation (fixed windows from the seed)")
    log_every: int = _field(10, "log train loss, lr, grad norm, tokens/s, MFU every N steps")
    log_file: str | None = _field(None, "append JSON lines (one per log/eval) to this file")
    peak_flops: float | None = _field(None, "peak FLOP/s per device for MFU (default: known accelerators)")
    # Checkpoints
    checkpoint_dir: str | None = _field(None, "directory of checkpoints (absent = no checkpoints)")
    checkpoint_every: int = _field(1000, "save every N steps and at the end (0 = only at the end)")
    keep: int = _field(3, "checkpoints kept (the newest)")
    resume: bool = _field(False, "continue from the newest valid checkpoint in --checkpoint-dir")
    seed: int = _field(0, "parameter init and data order")
    # Multi-process (multi-host) data parallelism
    coordinator: str | None = _field(None, "ADDR:PORT of process 0, to run across processes/hosts")
    num_processes: int | None = _field(None, "number of processes (with --coordinator)")
    process_id: int | None = _field(None, "this process's index (with --coordinator)")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check_type(f.name, f.type, getattr(self, f.name))
        positive = ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff",
                    "batch_size", "max_steps", "eval_batches", "log_every", "keep")
        nonnegative = ("warmup_steps", "weight_decay", "grad_clip", "eval_every", "checkpoint_every",
                       "seed", "min_lr", "eps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if self.peak_flops is not None and not self.peak_flops > 0:
            raise ConfigError(f"peak_flops must be > 0, got {self.peak_flops!r}")
        if self.ffn not in FFN_TYPES:
            raise ConfigError(f"ffn must be one of {FFN_TYPES}, got {self.ffn!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not self.warmup_steps <= self.decay_steps:
            raise ConfigError(f"warmup_steps={self.warmup_steps} exceeds cosine_steps={self.decay_steps} "
                              "(cosine_steps defaults to max_steps): lower --warmup-steps")
        if self.resume and self.checkpoint_dir is None:
            raise ConfigError("resume needs checkpoint_dir")
        try:
            self.model_config()
        except ValueError as e:
            raise ConfigError(str(e)) from None

    @property
    def decay_steps(self) -> int:
        return self.max_steps if self.cosine_steps is None else self.cosine_steps

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            vocab_size=self.vocab_size, context_length=self.context_length, d_model=self.d_model,
            num_layers=self.num_layers, num_heads=self.num_heads, d_ff=self.d_ff,
            rope_theta=float(self.rope_theta), remove_rmsnorm=self.no_rmsnorm,
            use_post_norm=self.post_norm, remove_rope=self.no_rope, ffn_type=self.ffn, dtype=self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Keys may use underscores or dashes; unknown keys are an error naming them."""
        d = {k.replace("-", "_"): v for k, v in d.items()}
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown training config keys: {unknown}")
        return cls(**d)


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_type(name: str, annotation: str, value) -> None:
    kind, _, optional = annotation.partition(" | ")
    if value is None and optional == "None":
        return
    ok = isinstance(value, _TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{name} must be {kind}{' or null' if optional else ''}, got {value!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxlm-train", description="Train a Transformer LM: `python -m jaxlm.train --train-data T.npy --val-data V.npy ...` (or `jaxlm-train`).",
                epilog="exit codes: 0 done; 1 non-finite loss (last good checkpoint kept); 2 bad "
                       "arguments, config or data; 130 SIGINT (checkpoint saved first)",
                argument_default=argparse.SUPPRESS)  # absent flags stay absent: JSON/defaults fill them
    p.add_argument("--config", metavar="FILE.json",
                   help="JSON object holding any of the options below (flags given here override it)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = f.type.partition(" | ")[0]
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if kind == "bool":
            p.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            choices = {"ffn": FFN_TYPES, "dtype": DTYPES}.get(f.name)
            is_path = f.name.endswith(("_data", "_file", "_dir")) or f.name == "tokenizer"
            metavar = None if choices else "PATH" if is_path else kind.upper()
            p.add_argument(flag, type={"int": int, "float": float, "str": str}[kind], choices=choices,
                           help=help_text, metavar=metavar)
    return p


def parse_args(argv=None) -> TrainConfig:
    """Flags > `--config` JSON > defaults. Raises ConfigError on anything wrong."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    config_path = args.pop("config", None)
    if config_path is not None:
        try:
            values = read_json_object(config_path, "--config")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        values = {k.replace("-", "_"): v for k, v in values.items()}
    values.update(args)
    return TrainConfig.from_dict(values)
