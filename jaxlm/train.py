"""Train a Transformer LM: `python -m jaxlm.train --train-data T.npy --val-data V.npy ...` (or `jaxlm-train`).

One jitted step (forward, loss, grad, clip, AdamW; params and optimizer state donated) runs over a
"data" mesh of every device (`jaxlm.parallel`). The batch of step s is `batch_for_step(train, B, T,
seed, s)`, so a run resumed from a checkpoint sees exactly the data of an uninterrupted one, and on
CPU ends with bit-identical losses. Losses stay on the device until a log, eval or checkpoint step.

Step numbering: "step k" (logs, checkpoints, messages) is the k-th update, 1-based; its record's
train_loss is the loss computed in that update, before the parameters changed. A checkpoint named
after step k holds the state after k updates, and training resumes with the (k+1)-th.

Exit codes of the CLI: 0 done, 1 the loss became non-finite (the last good checkpoint is kept),
2 bad arguments, configuration or data, 130 interrupted by SIGINT (after saving a checkpoint).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Callable

from jaxlm.config import ModelConfig
from jaxlm.train_config import ConfigError, TrainConfig, parse_args  # noqa: F401 (TrainConfig re-exported)


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) became non-finite: the CLI prints the message and exits 1."""


# ---- the compiled step functions -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Steps:
    init: Callable  # key -> (params, opt_state), replicated
    train: Callable  # (params, opt_state, x, y) -> (params, opt_state, loss, grad_norm); donates state
    eval: Callable  # (params, x, y) -> mean loss; compiled at the first evaluation
    all_finite: Callable  # pytree -> bool scalar
    compile_s: float  # seconds spent compiling the train step


@functools.lru_cache(maxsize=4)
def compiled_steps(model_cfg: ModelConfig, batch_size: int, optim: tuple, mesh) -> Steps:
    """Build and AOT-compile the jitted functions (cached, so tests and sweeps reuse them).

    optim = (lr, min_lr, warmup, cosine_steps, beta1, beta2, eps, weight_decay, grad_clip).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from jaxlm import parallel
    from jaxlm.losses import cross_entropy
    from jaxlm.model import forward, init_params
    from jaxlm.optim import adamw, clip_by_global_norm, global_norm, make_schedule

    lr, min_lr, warmup, cosine_steps, beta1, beta2, eps, weight_decay, grad_clip = optim
    optimizer = adamw(make_schedule(lr, min_lr, warmup, cosine_steps), betas=(beta1, beta2), eps=eps,
                      weight_decay=weight_decay)
    rep, bat = parallel.replicated(mesh), parallel.batch_sharded(mesh)

    def loss_fn(params, x_BT, y_BT):
        return cross_entropy(forward(params, x_BT, model_cfg), y_BT)

    def train_step(params, opt_state, x_BT, y_BT):
        loss, grads = jax.value_and_grad(loss_fn)(params, x_BT, y_BT)
        if grad_clip > 0:
            grads, grad_norm = clip_by_global_norm(grads, grad_clip)
        else:
            grad_norm = global_norm(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grad_norm

    def init(key):
        params = init_params(model_cfg, key)
        return params, optimizer.init(params)

    def all_finite(tree):
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))

    init_jit = jax.jit(init, out_shardings=rep)
    params_abs, opt_abs = jax.eval_shape(init, jax.random.key(0))
    batch_abs = jax.ShapeDtypeStruct((batch_size, model_cfg.context_length), jnp.int32, sharding=bat)
    t0 = time.perf_counter()
    train = jax.jit(train_step, donate_argnums=(0, 1), in_shardings=(rep, rep, bat, bat),
                    out_shardings=rep).lower(params_abs, opt_abs, batch_abs, batch_abs).compile()
    compile_s = time.perf_counter() - t0
    evaluate = jax.jit(loss_fn, in_shardings=(rep, bat, bat), out_shardings=rep)
    return Steps(init=init_jit, train=train, eval=evaluate, all_finite=jax.jit(all_finite),
                 compile_s=compile_s)


# ---- the run ---------------------------------------------------------------------------------------

def _load_data(path: str, cfg: TrainConfig, what: str):
    from jaxlm.data import check_token_ids, load_tokens

    try:
        tokens = load_tokens(path, cfg.data_dtype if not path.endswith(".npy") else None)
        check_token_ids(tokens, cfg.vocab_size)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"{what} data: {e}") from None
    if len(tokens) < cfg.context_length + 1:
        raise ConfigError(f"{what} data {path!r} has {len(tokens)} tokens, fewer than context_length + 1 "
                          f"= {cfg.context_length + 1}")
    return tokens


def _check_resumable(extra: dict, cfg: TrainConfig, path: str) -> None:
    """A checkpoint must match the model and the data order of the run resuming it."""
    saved_model = extra.get("model_config", {})
    current = cfg.model_config().to_dict()
    diff = sorted(k for k in set(saved_model) | set(current) if saved_model.get(k) != current.get(k))
    if diff:
        raise ConfigError(f"checkpoint {path!r} was saved with a different model config: "
                          + ", ".join(f"{k}={saved_model.get(k)!r} (now {current.get(k)!r})" for k in diff))
    order = extra.get("data_order", {})
    for key, now in (("seed", cfg.seed), ("batch_size", cfg.batch_size)):
        if order.get(key) != now:
            raise ConfigError(f"checkpoint {path!r} has data-order {key}={order.get(key)!r} but this run "
                              f"uses {now!r}: the data would not continue where it stopped")


class _SigintFlag:
    """First SIGINT asks the loop to save and stop; a second one raises KeyboardInterrupt."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run(cfg: TrainConfig, *, callback: Callable[[dict], None] | None = None, quiet: bool = False) -> dict:
    """Train per `cfg`; returns a summary dict. `callback(record)` sees every JSONL record as written.

    Raises ConfigError (bad config/data/checkpoint) or TrainingDiverged (non-finite loss).
    """
    import jax
    from tqdm.auto import tqdm

    from jaxlm import parallel
    from jaxlm.accounting import train_flops_per_step
    from jaxlm.checkpoint import (checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints,
                                  read_extra, save_checkpoint)
    from jaxlm.data import batch_for_step, validation_windows
    from jaxlm.optim import cosine_schedule

    run_start = time.perf_counter()
    if cfg.train_data is None:
        raise ConfigError("--train-data is required")
    try:
        parallel.init_distributed(cfg.coordinator, cfg.num_processes, cfg.process_id)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    is_main = jax.process_index() == 0
    quiet = quiet or not is_main
    model_cfg = cfg.model_config()
    B, T = cfg.batch_size, cfg.context_length
    if cfg.tokenizer is not None and not os.path.exists(cfg.tokenizer):
        raise ConfigError(f"--tokenizer {cfg.tokenizer!r} does not exist")
    train_tokens = _load_data(cfg.train_data, cfg, "train")
    val_tokens = _load_data(cfg.val_data, cfg, "validation") if cfg.val_data else None
    mesh = parallel.data_mesh()
    try:
        parallel.check_batch_size(B, mesh)
    except ValueError as e:
        raise ConfigError(str(e)) from None

    if is_main and cfg.checkpoint_dir is not None:
        try:
            os.makedirs(cfg.checkpoint_dir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create --checkpoint-dir {cfg.checkpoint_dir!r}: "
                              f"{e.strerror}") from None
        if not os.access(cfg.checkpoint_dir, os.W_OK):
            raise ConfigError(f"--checkpoint-dir {cfg.checkpoint_dir!r} is not writable")

    # Resume point, checked before paying for compilation.
    resume_from, extra = None, {}
    if cfg.resume:
        resume_from = latest_checkpoint(cfg.checkpoint_dir)
        if resume_from is not None:
            try:
                extra = read_extra(resume_from)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            _check_resumable(extra, cfg, resume_from)

    optim = (cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.decay_steps, cfg.beta1, cfg.beta2, cfg.eps,
             cfg.weight_decay, cfg.grad_clip)
    steps = compiled_steps(model_cfg, B, optim, mesh)
    params, opt_state = steps.init(jax.random.key(cfg.seed))
    start, elapsed_before, last_saved = 0, 0.0, None
    if resume_from is not None:
        try:  # restored onto the templates' (replicated) sharding
            params, opt_state, start = load_checkpoint(resume_from, params, opt_state)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        last_saved = start
        elapsed_before = float(extra.get("elapsed_s", 0.0))

    flops_per_step = train_flops_per_step(model_cfg, B, T)
    peak = cfg.peak_flops or parallel.peak_flops_per_device(jax.devices()[0])
    peak_total = peak * mesh.size if peak else None
    val_batches = []
    if val_tokens is not None and cfg.eval_every > 0:
        val_batches = [(parallel.shard_batch(x, mesh), parallel.shard_batch(y, mesh))
                       for x, y in validation_windows(val_tokens, cfg.eval_batches, B, T, cfg.seed)]

    log_fh = None
    if is_main and cfg.log_file:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(cfg.log_file)), exist_ok=True)
            log_fh = open(cfg.log_file, "a" if cfg.resume else "w")
        except OSError as e:
            raise ConfigError(f"cannot write --log-file {cfg.log_file!r}: {e.strerror}") from None
    pbar = tqdm(total=cfg.max_steps, initial=start, unit="step", disable=True if quiet else None,
                dynamic_ncols=True)
    loop_start = time.perf_counter()

    def elapsed():
        return round(elapsed_before + time.perf_counter() - loop_start, 3)

    def emit(record):
        if log_fh is not None:
            log_fh.write(json.dumps(record) + "\n")
            log_fh.flush()
        if callback is not None and is_main:
            callback(record)

    def say(message):
        if not quiet:
            pbar.write(message)

    def next_batch(s):
        x, y = batch_for_step(train_tokens, B, T, cfg.seed, s)
        return parallel.shard_batch(x, mesh), parallel.shard_batch(y, mesh)

    def save(step):
        nonlocal last_saved
        if cfg.checkpoint_dir is None or last_saved == step:
            return
        if not bool(parallel.to_host(steps.all_finite((params, opt_state)))):
            raise TrainingDiverged(f"non-finite parameters after step {step}; not saving them. Last good "
                                   f"checkpoint: {last_saved_path()}")
        if is_main:  # replicated state: process 0 writes its own copy
            path = checkpoint_path(cfg.checkpoint_dir, step)
            meta = {"model_config": model_cfg.to_dict(), "train_config": cfg.to_dict(),
                    "data_order": {"seed": cfg.seed, "batch_size": B, "next_step": step},
                    "tokenizer": os.path.abspath(cfg.tokenizer) if cfg.tokenizer else None,
                    "elapsed_s": elapsed()}
            save_checkpoint(params, opt_state, step, path, extra=meta)
            prune_checkpoints(cfg.checkpoint_dir, cfg.keep)
        last_saved = step

    def last_saved_path():
        found = latest_checkpoint(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        return found or "none"

    emit({"compile_s": round(steps.compile_s, 3), "devices": mesh.size, "processes": jax.process_count(),
          "start_step": start})
    where = (f"resuming from {resume_from} at step {start}" if resume_from else
             f"no checkpoint in {cfg.checkpoint_dir}: starting from step 0" if cfg.resume else
             "starting from step 0")
    say(f"train step compiled in {steps.compile_s:.1f}s for {mesh.size} device(s); {where}")

    step = start
    pending = []  # (step, loss, grad_norm) still on the device
    mark_time, mark_step = time.perf_counter(), step
    train_time, train_steps = 0.0, 0
    last_loss = last_val = None
    interrupted = False
    with _SigintFlag() as sigint:
        try:
            x, y = next_batch(step) if step < cfg.max_steps else (None, None)
            while step < cfg.max_steps:
                params, opt_state, loss, grad_norm = steps.train(params, opt_state, x, y)
                step += 1
                pending.append((step, loss, grad_norm))
                if step < cfg.max_steps:
                    x, y = next_batch(step)  # host work overlaps the dispatched step
                pbar.update(1)
                final = step == cfg.max_steps
                do_log = step % cfg.log_every == 0 or final
                do_eval = bool(val_batches) and (step % cfg.eval_every == 0 or final)
                do_ckpt = cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0
                interrupted = sigint.set
                if not (do_log or do_eval or do_ckpt or interrupted):
                    continue
                # Sync point: fetch every pending loss, stop on the first non-finite one.
                fetched = parallel.to_host([(l, g) for _, l, g in pending])
                for (s, _, _), (l, g) in zip(pending, fetched):
                    if not (math.isfinite(float(l)) and math.isfinite(float(g))):
                        raise TrainingDiverged(
                            f"non-finite {'loss' if not math.isfinite(float(l)) else 'gradient norm'} at "
                            f"step {s} (loss={float(l)}, grad_norm={float(g)}); stopping. Last good "
                            f"checkpoint: {last_saved_path()}")
                last_loss, last_norm = float(fetched[-1][0]), float(fetched[-1][1])
                pending.clear()
                now = time.perf_counter()
                window_steps, window_time = step - mark_step, now - mark_time
                train_time += window_time
                train_steps += window_steps
                if do_log:
                    tok_s = window_steps * B * T / window_time
                    mfu = flops_per_step * window_steps / window_time / peak_total if peak_total else None
                    lr = cosine_schedule(step - 1, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.decay_steps)
                    emit({"step": step, "train_loss": last_loss, "lr": lr, "grad_norm": last_norm,
                          "tokens_per_sec": round(tok_s, 1), "mfu": mfu, "elapsed_s": elapsed()})
                    pbar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                if do_eval:
                    total = sum(steps.eval(params, vx, vy) for vx, vy in val_batches)
                    last_val = float(parallel.to_host(total)) / len(val_batches)
                    emit({"step": step, "val_loss": last_val, "val_perplexity": math.exp(min(last_val, 700)),
                          "elapsed_s": elapsed()})
                    say(f"step {step}: val loss {last_val:.4f}")
                if do_ckpt or interrupted:
                    save(step)
                if interrupted:
                    say(f"interrupted: saved step {step}" if cfg.checkpoint_dir else
                        f"interrupted at step {step} (no --checkpoint-dir: nothing saved)")
                    break
                mark_time, mark_step = time.perf_counter(), step
            if not interrupted:
                save(step)
        finally:
            pbar.close()
            if log_fh is not None:
                log_fh.close()
    saved = str(checkpoint_path(cfg.checkpoint_dir, last_saved)) if last_saved is not None else None
    return {"steps": step, "final_train_loss": last_loss, "final_val_loss": last_val, "checkpoint": saved,
            "log_file": cfg.log_file,
            "tokens_per_sec": train_steps * B * T / train_time if train_time else None,
            "compile_s": steps.compile_s, "interrupted": interrupted,
            "wall_s": time.perf_counter() - run_start}


def main(argv=None) -> int:
    try:
        cfg = parse_args(argv)
        summary = run(cfg)
    except ConfigError as e:
        print(f"jaxlm-train: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"jaxlm-train: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the loop (loading, compiling) or a second Ctrl-C
        print("jaxlm-train: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(summary))
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
