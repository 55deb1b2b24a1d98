"""Resource accounting for a ModelConfig: parameters, matmul FLOPs, training memory (handout §3.6, §4.3).

FLOPs count matrix multiplies only (2 m n p for an (m, n) @ (n, p) product), as the handout does; norms,
softmax, RoPE and the residual adds are lower order. Attention counts the full T x T score matrix (the
causal mask is not exploited). Training = forward + backward = 3 x forward.

    python -m jaxlm.accounting --preset gpt2-xl [--context-length 16384] [--batch-size 4]
"""
from __future__ import annotations

import argparse

from jaxlm.config import ModelConfig

FLOAT32_BYTES = 4

# The handout's GPT-2 shapes (vocab 50,257, context 1,024, d_ff = 4 d_model) in the CS336 architecture.
PRESETS = {
    "gpt2-small": dict(num_layers=12, d_model=768, num_heads=12),
    "gpt2-medium": dict(num_layers=24, d_model=1024, num_heads=16),
    "gpt2-large": dict(num_layers=36, d_model=1280, num_heads=20),
    "gpt2-xl": dict(num_layers=48, d_model=1600, num_heads=25),
}
FLOP_COMPONENTS = ("qkv_proj", "output_proj", "attn_scores", "attn_values", "ffn", "lm_head")


def preset(name: str, context_length: int = 1024) -> ModelConfig:
    """One of PRESETS as a ModelConfig."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    p = PRESETS[name]
    return ModelConfig(vocab_size=50257, context_length=context_length, d_ff=4 * p["d_model"], **p)


def _ffn_matrices(config: ModelConfig) -> int:
    return 3 if config.ffn_type == "swiglu" else 2


def param_count(config: ModelConfig) -> int:
    """Trainable parameters: embeddings, L x (attention, FFN, two norms), final norm, untied lm_head."""
    V, D, F, L = config.vocab_size, config.d_model, config.d_ff, config.num_layers
    norms = 0 if config.remove_rmsnorm else 1
    per_layer = 4 * D * D + _ffn_matrices(config) * D * F + norms * 2 * D
    return V * D + L * per_layer + norms * D + V * D


def forward_flops(config: ModelConfig, seq_len: int | None = None) -> dict[str, float]:
    """Matmul FLOPs of one forward pass over one sequence of seq_len (default context_length) tokens,
    by component (summed over layers) plus "total"."""
    T = config.context_length if seq_len is None else seq_len
    V, D, F, L = config.vocab_size, config.d_model, config.d_ff, config.num_layers
    flops = {
        "qkv_proj": L * 2 * T * D * 3 * D,
        "output_proj": L * 2 * T * D * D,
        "attn_scores": L * 2 * T * T * D,  # Q K^T: H heads x (T, d_k) @ (d_k, T)
        "attn_values": L * 2 * T * T * D,  # softmax(.) V: H heads x (T, T) @ (T, d_k)
        "ffn": L * 2 * T * D * F * _ffn_matrices(config),
        "lm_head": 2 * T * D * V,
    }
    flops = {k: float(v) for k, v in flops.items()}
    flops["total"] = sum(flops.values())
    return flops


def forward_flops_per_token(config: ModelConfig, seq_len: int | None = None) -> dict[str, float]:
    """forward_flops divided by the number of tokens in the sequence."""
    T = config.context_length if seq_len is None else seq_len
    return {k: v / T for k, v in forward_flops(config, T).items()}


def train_flops_per_step(config: ModelConfig, batch_size: int, seq_len: int | None = None) -> float:
    """Forward + backward (2 x forward) matmul FLOPs for one batch: 3 x batch_size x forward total."""
    return 3.0 * batch_size * forward_flops(config, seq_len)["total"]


def activation_floats_per_sequence(config: ModelConfig, seq_len: int | None = None) -> dict[str, int]:
    """Activations kept for the backward pass, per sequence, as the handout lists them (float counts).

    Per block: the RMSNorm outputs, QKV projections, Q K^T scores, softmax, weighted sum of values,
    output projection, W1 output, SiLU output (SwiGLU adds the W3 output and the gated product), W2
    output; then the final RMSNorm, the output embedding (logits) and cross-entropy (its softmax).
    """
    T = config.context_length if seq_len is None else seq_len
    V, D, F, L, H = config.vocab_size, config.d_model, config.d_ff, config.num_layers, config.num_heads
    norms = 0 if config.remove_rmsnorm else 1
    ffn_hidden = 4 if config.ffn_type == "swiglu" else 2
    return {
        "rmsnorm": L * norms * 2 * T * D + norms * T * D,
        "qkv_proj": L * 3 * T * D,
        "attn_scores": L * H * T * T,
        "attn_softmax": L * H * T * T,
        "attn_values": L * T * D,
        "output_proj": L * T * D,
        "ffn": L * (ffn_hidden * T * F + T * D),
        "lm_head": T * V,
        "cross_entropy": T * V,
    }


def training_memory(config: ModelConfig, batch_size: int, seq_len: int | None = None) -> dict[str, int]:
    """Float32 bytes to train with AdamW: parameters, gradients, AdamW state (m and v), activations."""
    P = param_count(config)
    activations = sum(activation_floats_per_sequence(config, seq_len).values())
    mem = {"parameters": P, "gradients": P, "adamw_state": 2 * P, "activations": batch_size * activations}
    mem = {k: FLOAT32_BYTES * v for k, v in mem.items()}
    mem["total"] = sum(mem.values())
    return mem


def max_batch_size(config: ModelConfig, memory_bytes: float, seq_len: int | None = None) -> int:
    """Largest batch whose training_memory fits in memory_bytes (0 if even the states do not fit)."""
    fixed = training_memory(config, 0, seq_len)["total"]
    per_sequence = training_memory(config, 1, seq_len)["total"] - fixed
    return max(0, int((memory_bytes - fixed) // per_sequence))


# ---- CLI ---------------------------------------------------------------------------------------------

def _flops_table(name: str, config: ModelConfig) -> str:
    f = forward_flops(config)
    lines = [f"### {name}: {param_count(config):,} parameters, context {config.context_length}",
             "", "| component | forward FLOPs / sequence | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {f[k]:.4g} | {100 * f[k] / f['total']:.1f}% |" for k in FLOP_COMPONENTS]
    lines.append(f"| **total** | {f['total']:.4g} | 100% |")
    return "\n".join(lines)


def _memory_table(name: str, config: ModelConfig, batch_size: int, memory_gb: float) -> str:
    fixed = training_memory(config, 0)
    per_seq = training_memory(config, 1)["activations"]
    mem = training_memory(config, batch_size)
    gb = 1e9
    lines = [f"### {name}: training memory (float32, AdamW), batch {batch_size}", "",
             "| item | GB |", "|---|---:|"]
    lines += [f"| {k} | {v / gb:.2f} |" for k, v in mem.items()]
    lines += ["", f"total = {per_seq / gb:.4f} GB x batch_size + {fixed['total'] / gb:.2f} GB; "
              f"largest batch in {memory_gb:g} GB: {max_batch_size(config, memory_gb * gb)}"]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m jaxlm.accounting", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=[*PRESETS, "all"], default="all")
    ap.add_argument("--context-length", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=1, help="for the memory table")
    ap.add_argument("--memory-gb", type=float, default=80.0, help="device memory for the largest batch")
    ap.add_argument("--steps", type=int, default=400_000, help="training-time estimate: steps")
    ap.add_argument("--train-batch-size", type=int, default=1024, help="training-time estimate: batch")
    ap.add_argument("--peak-tflops", type=float, default=19.5,
                    help="training-time estimate: device peak (19.5 = NVIDIA A100 float32, datasheet)")
    ap.add_argument("--mfu", type=float, default=0.5, help="training-time estimate: model FLOPs utilisation")
    a = ap.parse_args(argv)
    names = list(PRESETS) if a.preset == "all" else [a.preset]
    for name in names:
        config = preset(name, a.context_length)
        flops = train_flops_per_step(config, a.train_batch_size) * a.steps
        days = flops / (a.peak_tflops * 1e12 * a.mfu) / 86400
        print(_flops_table(name, config), "\n")
        print(_memory_table(name, config, a.batch_size, a.memory_gb), "\n")
        print(f"training {a.steps:,} steps x batch {a.train_batch_size} x {config.context_length} tokens: "
              f"{flops:.4g} FLOPs = {days:,.1f} days at {a.mfu:.0%} of {a.peak_tflops:g} TFLOP/s\n")


if __name__ == "__main__":
    main()
