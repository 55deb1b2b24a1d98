"""Token data: memory-mapped token files, id validation, random context windows, device lookup.

A dataset is a 1-D integer array of token ids, normally a `np.memmap` (or `np.load(mmap_mode="r")`) so
that a multi-GB corpus is never read into memory: a batch gathers only its B windows of T+1 tokens.
The training script's data order is a pure function of (seed, step) (`batch_for_step`), so a resumed
run sees exactly the batches of an uninterrupted one.
"""
from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

VAL_STREAM = 1  # SeedSequence spawn key of the validation windows (training batches use [seed, step])


class DeviceError(ValueError, RuntimeError):
    """An unknown or absent device. Also a RuntimeError, what CS336's get_batch test expects."""


def load_tokens(path, dtype=None) -> np.ndarray:
    """Memory-map a token file: `.npy` (dtype from its header) or raw binary (`dtype` required)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"token file {path!r} does not exist (or is not a regular file)")
    if path.endswith(".npy"):
        if dtype is not None:
            raise ValueError(f"token file {path!r} is .npy (dtype comes from its header); drop the dtype "
                             f"argument ({dtype!r})")
        try:
            tokens = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"token file {path!r} is not a readable .npy file (truncated or corrupt?): "
                             f"{e}") from None
    else:
        if dtype is None:
            raise ValueError(f"token file {path!r} is raw binary: give its dtype (e.g. uint16), or save it "
                             "as .npy")
        dtype = np.dtype(dtype)
        size = os.path.getsize(path)
        if size == 0:
            raise ValueError(f"token file {path!r} is empty")
        if size % dtype.itemsize:
            raise ValueError(f"token file {path!r} has {size} bytes, not a multiple of {dtype} "
                             f"({dtype.itemsize} bytes): wrong dtype or truncated file")
        tokens = np.memmap(path, dtype=dtype, mode="r")
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token file {path!r} holds a {tokens.dtype} array of shape {tokens.shape}; "
                         "expected a 1-D integer array of token ids")
    return tokens


def _source_name(tokens) -> str:
    filename = getattr(tokens, "filename", None)
    return f"token file {filename!r}" if filename else "token array"


def check_token_ids(tokens, vocab_size: int, chunk: int = 1 << 24) -> None:
    """Raise ValueError naming the first offset holding an id outside [0, vocab_size), and how many do.

    Scans `chunk` tokens at a time so a memmap is never loaded whole.
    """
    first, count = None, 0
    for start in range(0, len(tokens), chunk):
        part = np.asarray(tokens[start:start + chunk])
        bad = (part >= vocab_size) | (part < 0) if np.issubdtype(part.dtype, np.signedinteger) \
            else part >= vocab_size
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            if first is None:
                i = int(np.argmax(bad))
                first = (start + i, int(part[i]))
            count += n_bad
    if first is not None:
        offset, value = first
        raise ValueError(f"{_source_name(tokens)}: {count} token id(s) outside [0, {vocab_size}) "
                         f"(vocab_size); the first is {value} at token offset {offset}")


_DEVICE_RE = re.compile(r"^(cpu|cuda|gpu|rocm|tpu)(?::(\d+))?$")


def resolve_device(device) -> jax.Device:
    """A jax.Device from a name ("cpu", "cpu:1", "cuda:0"/"gpu:0", "tpu:0") or a jax.Device."""
    if isinstance(device, jax.Device):
        return device
    present = ", ".join(dict.fromkeys(f"{d.platform}:{i}" for kind in (None, "cpu")
                                      for i, d in enumerate(jax.devices(kind))))
    m = _DEVICE_RE.match(str(device).strip().lower()) if isinstance(device, str) else None
    if m is None:
        raise DeviceError(f"unknown device {device!r}: expected 'cpu', 'cuda:N'/'gpu:N', 'tpu:N' or a "
                          f"jax.Device (devices present: {present})")
    kind, index = m.group(1), int(m.group(2) or 0)
    backend = {"cuda": "gpu", "rocm": "gpu"}.get(kind, kind)
    try:
        devices = jax.devices(backend)
    except RuntimeError:
        devices = []
    if index >= len(devices):
        raise DeviceError(f"device {device!r} is not present (devices present: {present})")
    return devices[index]


def _starts_rng(key_or_rng) -> np.random.Generator:
    """A numpy Generator from a Generator or a JAX PRNG key (its bits seed the Generator)."""
    if isinstance(key_or_rng, np.random.Generator):
        return key_or_rng
    key = key_or_rng
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    bits = np.asarray(key)
    if bits.dtype != np.uint32 or bits.size == 0:
        raise TypeError(f"key_or_rng must be a JAX PRNG key or a np.random.Generator, got {key_or_rng!r}")
    return np.random.default_rng(bits.ravel().tolist())


def sample_windows(dataset, batch_size: int, context_length: int, rng: np.random.Generator):
    """(x, y) int32 numpy arrays `(B, T)`: B windows starting uniformly in [0, len - T), y = x shifted by 1."""
    if np.ndim(dataset) != 1:
        raise ValueError(f"{_source_name(dataset)} must be a 1-D array of token ids, got shape "
                         f"{np.shape(dataset)}")
    n = len(dataset)
    if n < context_length + 1:
        raise ValueError(f"{_source_name(dataset)} has {n} tokens; a context of {context_length} needs at "
                         f"least {context_length + 1} (inputs plus the next-token target)")
    if batch_size <= 0 or context_length <= 0:
        raise ValueError(f"batch_size and context_length must be positive, got {batch_size}, {context_length}")
    starts_B = rng.integers(0, n - context_length, size=batch_size)
    # Fancy indexing of a memmap reads only these B * (T + 1) tokens.
    windows_BT1 = np.asarray(dataset[starts_B[:, None] + np.arange(context_length + 1)], dtype=np.int32)
    return np.ascontiguousarray(windows_BT1[:, :-1]), np.ascontiguousarray(windows_BT1[:, 1:])


def get_batch(dataset, batch_size: int, context_length: int, *, key_or_rng, device=None):
    """Random (inputs, targets) int32 JAX arrays `(B, T)` on `device` (default device when None).

    key_or_rng: a np.random.Generator (advanced by the call) or a JAX PRNG key (the same key gives the
    same batch: split it per step). Starts are uniform over the len - T valid positions.
    """
    x_BT, y_BT = sample_windows(dataset, batch_size, context_length, _starts_rng(key_or_rng))
    if device is None:
        return jnp.asarray(x_BT), jnp.asarray(y_BT)
    device = resolve_device(device)
    return jax.device_put(x_BT, device), jax.device_put(y_BT, device)


def batch_for_step(dataset, batch_size: int, context_length: int, seed: int, step: int):
    """The training batch of `step` as numpy arrays: a pure function of (seed, step)."""
    if seed < 0 or step < 0:
        raise ValueError(f"seed and step must be >= 0, got seed={seed}, step={step}")
    return sample_windows(dataset, batch_size, context_length, np.random.default_rng([seed, step]))


def validation_windows(dataset, num_batches: int, batch_size: int, context_length: int, seed: int):
    """A fixed list of `num_batches` numpy (x, y) batches chosen from the seed (independent of training's)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(VAL_STREAM,)))
    return [sample_windows(dataset, batch_size, context_length, rng) for _ in range(num_batches)]
