"""Generate text from a checkpoint: `python -m jaxlm.generate` (console script `jaxlm-generate`).

    python -m jaxlm.generate --checkpoint runs/quickstart/checkpoints --prompt "Once upon a time"

--checkpoint is a checkpoint file or a directory of them (the newest valid one is used). The model
config and the tokenizer directory come from the checkpoint's metadata unless --model-config /
--tokenizer are given. Each sample stops at `<|endoftext|>`; the text is printed, then a line with the
decoding speed. Exit codes: 0 done, 2 bad arguments or files (one line on stderr).

Importing this module also keeps `jaxlm.generate(...)` working as the function: `import jaxlm.generate`
binds the package attribute `jaxlm.generate` to this module, so the module is made callable and
forwards to `jaxlm.decode.generate`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path

EOT = "<|endoftext|>"


class CliError(ValueError):
    """Bad arguments or input files: main() prints the message on one line and exits 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxlm-generate", description="Generate text from a jaxlm checkpoint.")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="checkpoint file, or a directory holding ckpt_*.ckpt (the newest valid one is used)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: from the checkpoint)")
    p.add_argument("--model-config", metavar="FILE.json",
                   help="ModelConfig as JSON (default: from the checkpoint)")
    p.add_argument("--prompt", required=True, metavar="TEXT",
                   help=f"text to continue; an empty prompt starts a new document after {EOT}")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N",
                   help="tokens per sample, at most what the context leaves after the prompt (256)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature, 0 = greedy (0.8)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass, 1 = off (0.9)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.add_argument("--num-samples", type=int, default=1, metavar="N", help="samples, generated as one batch (1)")
    return p


def resolve_checkpoint(path: str) -> Path:
    """A checkpoint file, or the newest valid checkpoint in a directory."""
    from jaxlm.checkpoint import latest_checkpoint

    p = Path(path)
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise CliError(f"no valid checkpoint (ckpt_*.ckpt) in directory {path!r}")
        return found
    if not p.is_file():
        raise CliError(f"checkpoint {path!r} does not exist")
    return p


def load_model(checkpoint: str, model_config: str | None = None):
    """(params, ModelConfig, checkpoint metadata) from a checkpoint file or directory."""
    import jax

    from jaxlm.checkpoint import load_params, read_extra
    from jaxlm.config import ModelConfig, read_json_object
    from jaxlm.model import init_params

    path = resolve_checkpoint(checkpoint)
    try:
        extra = read_extra(path)
        if model_config is not None:
            config_dict = read_json_object(model_config, "--model-config")
        elif "model_config" in extra:
            config_dict = extra["model_config"]
        else:
            raise CliError(f"checkpoint {str(path)!r} has no model_config in its metadata: pass --model-config")
        config = ModelConfig.from_dict(config_dict)
        params = load_params(path, jax.eval_shape(init_params, config, jax.random.key(0)))
    except CliError:
        raise
    except (ValueError, TypeError) as e:
        raise CliError(str(e)) from None
    return params, config, extra, path


def load_tokenizer(tokenizer_dir: str | None, extra: dict, checkpoint: Path):
    """The tokenizer from --tokenizer, else the path in the checkpoint metadata (as saved, or relative to
    the checkpoint's directory when that does not exist)."""
    from tokenizer import Tokenizer

    if tokenizer_dir is None:
        saved = extra.get("tokenizer")
        if not saved:
            raise CliError(f"checkpoint {str(checkpoint)!r} records no tokenizer path: pass --tokenizer")
        candidates = [Path(saved), checkpoint.parent / saved]
        tokenizer_dir = next((str(c) for c in candidates if c.is_dir()), None)
        if tokenizer_dir is None:
            raise CliError(f"the checkpoint's tokenizer directory {saved!r} does not exist: pass --tokenizer")
    elif not os.path.isdir(tokenizer_dir):
        raise CliError(f"tokenizer directory {tokenizer_dir!r} does not exist")
    try:
        return Tokenizer.load(tokenizer_dir)
    except (OSError, ValueError) as e:
        raise CliError(f"cannot load tokenizer from {tokenizer_dir!r}: {e}") from None


def split_samples(new_ids, eos_id):
    """Per row, the generated ids before the first eos (the eos and its padding dropped)."""
    rows = []
    for row in new_ids.tolist():
        rows.append(row[:row.index(eos_id)] if eos_id is not None and eos_id in row else row)
    return rows


def run(args: argparse.Namespace, out=None) -> dict:
    """Load, generate and print (to `out`, default stdout); returns {"samples": [str], "tokens": int,
    "tokens_per_sec": float, ...}."""
    out = sys.stdout if out is None else out
    for name, lo in (("max_new_tokens", 1), ("num_samples", 1), ("seed", 0)):
        if getattr(args, name) < lo:
            raise CliError(f"--{name.replace('_', '-')} must be >= {lo}, got {getattr(args, name)}")
    if not args.temperature >= 0:
        raise CliError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 <= args.top_p <= 1:
        raise CliError(f"--top-p must be in [0, 1], got {args.top_p}")

    import jax
    import numpy as np

    from jaxlm import decode

    params, config, extra, ckpt = load_model(args.checkpoint, args.model_config)
    tok = load_tokenizer(args.tokenizer, extra, ckpt)
    if tok.vocab_size > config.vocab_size:
        raise CliError(f"the tokenizer has {tok.vocab_size} ids but the model only {config.vocab_size}: "
                       "wrong --tokenizer?")
    eos_id = tok.special_ids.get(EOT)
    prompt_ids = tok.encode(args.prompt)
    if not prompt_ids:
        if eos_id is None:
            raise CliError(f"empty prompt and the tokenizer has no {EOT} to start a document with")
        prompt_ids = [eos_id]
    ctx, max_new = config.context_length, args.max_new_tokens
    if len(prompt_ids) >= ctx:
        raise CliError(f"the prompt has {len(prompt_ids)} tokens; the model's context length is {ctx}")
    if len(prompt_ids) + max_new > ctx:
        max_new = ctx - len(prompt_ids)
        print(f"note: generating {max_new} tokens: the prompt's {len(prompt_ids)} + {args.max_new_tokens} "
              f"exceed the model's context length {ctx}", file=sys.stderr)
    prompt_BT = np.tile(np.asarray(prompt_ids, np.int32), (args.num_samples, 1))
    try:
        generate_fn, compile_s = decode.compile_generate(
            params, config, prompt_BT, max_new_tokens=max_new, temperature=args.temperature,
            top_p=args.top_p, eos_id=eos_id, key=jax.random.key(args.seed))
    except ValueError as e:
        raise CliError(str(e)) from None
    t0 = time.perf_counter()
    new_BN = np.asarray(generate_fn())
    seconds = time.perf_counter() - t0

    samples = [tok.decode(ids) for ids in split_samples(new_BN, eos_id)]
    for i, text in enumerate(samples):
        if args.num_samples > 1:
            print(f"---- sample {i + 1}/{args.num_samples} ----", file=out)
        print(args.prompt + text, file=out)
    # Counted up to each row's eos: the loop stops as soon as every row has produced one.
    tokens = sum(len(ids) for ids in split_samples(new_BN, eos_id))
    rate = tokens / seconds if seconds > 0 else float("inf")
    print(f"[{tokens} tokens in {seconds:.2f}s: {rate:,.1f} tokens/s ({args.num_samples} sample(s), "
          f"compiled in {compile_s:.1f}s) from {ckpt}]", file=out)
    return {"samples": samples, "tokens": tokens, "seconds": seconds, "tokens_per_sec": rate,
            "compile_s": compile_s, "checkpoint": str(ckpt)}


def main(argv=None) -> int:
    try:
        run(build_parser().parse_args(argv))
    except CliError as e:
        print(f"jaxlm-generate: error: {e}", file=sys.stderr)
        return 2
    return 0


class _CallableModule(types.ModuleType):
    """`jaxlm.generate(params, config, ...)` calls jaxlm.decode.generate even after this module is imported
    (which rebinds the package attribute `jaxlm.generate` from the function to the module)."""

    def __call__(self, *args, **kwargs):
        from jaxlm.decode import generate

        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
