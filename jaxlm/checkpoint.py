"""Exact, atomic, self-checking training checkpoints in one file.

Layout (little-endian):
    magic b"JAXLMCKP" | format version u32 | header length u64 | header (UTF-8 JSON) | array bytes | sha256
The JSON header holds `iteration`, `extra` (model/train config, data-order RNG state, tokenizer path:
anything JSON-able) and one entry per array leaf of the `{"params": ..., "opt_state": ...}` pytree:
its key path ("params/layers/attn/qkv_proj", "opt_state/m/lm_head", ...), dtype, shape, byte offset.
The arrays follow as raw bytes, so a round trip is bit-exact in every dtype (bfloat16 included). The
sha256 of everything before it ends the file, so truncation and corruption are detected, not loaded.

Saving to a path writes a temp file in the same directory, fsyncs it, renames it over the target and
fsyncs the directory: a crash at any moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tokenizer.textio import atomic_write

MAGIC = b"JAXLMCKP"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")  # magic, format version, header length
_DIGEST_SIZE = 32  # sha256 trailer
_CHUNK = 1 << 24  # bytes per read when streaming a file through the hash
_MAX_HEADER = 1 << 30  # a longer metadata header means a corrupt length field
_NAME_RE = re.compile(r"^ckpt_(\d+)\.ckpt$")


class CheckpointError(ValueError):
    """A checkpoint that is truncated, corrupt, foreign, or does not fit the given templates."""


# ---- pytree <-> flat arrays ------------------------------------------------------------------------

def _key_str(key) -> str:
    for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _flatten(params, opt_state=None, *, params_only=False):
    """[(key path string, leaf)] of {"params": params, "opt_state": opt_state}, and its treedef."""
    tree = {"params": params} if params_only else {"params": params, "opt_state": opt_state}
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [("/".join(_key_str(k) for k in path), leaf) for path, leaf in flat], treedef


def _to_host(key: str, leaf) -> np.ndarray:
    """A C-contiguous little-endian numpy copy of one leaf. Multi-process: replicated arrays use the local
    copy; a sharded one is all-gathered, which is collective (every process must then call save)."""
    if isinstance(leaf, jax.Array):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise TypeError(f"checkpoint leaf {key!r} is a typed PRNG key: store jax.random.key_data(key)")
        if not leaf.is_fully_addressable:  # multi-process: replicated arrays have a full local copy
            if not leaf.is_fully_replicated:
                from jax.experimental import multihost_utils
                return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
            leaf = leaf.addressable_data(0)
    arr = np.asarray(leaf)
    if arr.dtype == object:
        raise TypeError(f"checkpoint leaf {key!r} is not an array ({type(leaf).__name__})")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr if arr.flags.c_contiguous else arr.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)


def _array_bytes(arr: np.ndarray) -> memoryview:
    return memoryview(arr.reshape(-1).view(np.uint8))


def _leaf_spec(leaf):
    """(shape, dtype) of a template leaf: an array, a jax.ShapeDtypeStruct or a Python scalar."""
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(leaf.shape), np.dtype(leaf.dtype)
    arr = np.asarray(leaf)
    return arr.shape, arr.dtype


def _restore_leaf(arr: np.ndarray, template):
    """`arr` in the template leaf's kind: a jax.Array on the template's sharding, numpy, or a scalar."""
    sharding = getattr(template, "sharding", None)
    if isinstance(template, (jax.Array, jax.ShapeDtypeStruct)):
        if isinstance(sharding, jax.sharding.Sharding):
            # Copy per shard: on CPU device_put may alias host memory, and the file buffer is not ours.
            return jax.make_array_from_callback(arr.shape, sharding, lambda index: np.array(arr[index]))
        return jnp.asarray(arr)
    if isinstance(template, (bool, int, float, complex)):
        return type(template)(arr.item())
    if isinstance(template, np.generic):
        return arr[()].copy()
    return arr.copy()  # own its memory (not a view of the whole file's buffer)


# ---- writing -------------------------------------------------------------------------------------

def _write(f, header: bytes, arrays) -> None:
    digest = hashlib.sha256()

    def put(b):
        digest.update(b)
        f.write(b)

    put(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)))
    put(header)
    for arr in arrays:
        put(_array_bytes(arr))
    f.write(digest.digest())


def save_checkpoint(params, opt_state, iteration: int, out, *, extra: dict | None = None) -> None:
    """Write params, optimizer state, iteration and `extra` (JSON-able dict) to a path or binary file."""
    iteration = int(iteration)
    if iteration < 0:
        raise ValueError(f"checkpoint iteration must be >= 0, got {iteration}")
    keyed, _ = _flatten(params, opt_state)
    arrays = [_to_host(key, leaf) for key, leaf in keyed]
    table, offset = [], 0
    for (key, _), arr in zip(keyed, arrays):
        table.append({"key": key, "dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset,
                      "nbytes": arr.nbytes})
        offset += arr.nbytes
    meta = {"iteration": iteration, "extra": extra or {}, "arrays": table, "data_nbytes": offset}
    try:
        header = json.dumps(meta).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint extra must be JSON-serialisable: {e}") from None

    if not isinstance(out, (str, os.PathLike)):
        _write(out, header, arrays)
        return
    with atomic_write(out) as f:
        _write(f, header, arrays)


# ---- reading -------------------------------------------------------------------------------------

def _read(f, name: str, *, keep_data: bool, size: int | None = None, header_only: bool = False):
    """Parse and verify a checkpoint stream: (metadata dict, array bytes or None).

    header_only (needs `size`): stop after checking the header and the file size, skipping the checksum.
    """
    prefix = f.read(_PREFIX.size)
    if prefix[:len(MAGIC)] != MAGIC[:len(prefix)] or not prefix:
        raise CheckpointError(f"{name} is not a jaxlm checkpoint (no {MAGIC!r} magic at its start)")
    if len(prefix) < _PREFIX.size:
        raise CheckpointError(f"{name} is truncated: {len(prefix)} bytes, shorter than the file header")
    _, version, header_len = _PREFIX.unpack(prefix)
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{name} has checkpoint format version {version}; this jaxlm reads up to "
                              f"{FORMAT_VERSION}: upgrade jaxlm")
    if size is not None and _PREFIX.size + header_len > size or header_len > _MAX_HEADER:
        raise CheckpointError(f"{name} is truncated or corrupt: its header claims {header_len} bytes of "
                              f"metadata" + (f" in a {size}-byte file" if size is not None else ""))
    header = f.read(header_len)
    if len(header) < header_len:
        raise CheckpointError(f"{name} is truncated: its metadata header ends after {len(header)} of "
                              f"{header_len} bytes")
    try:
        meta = json.loads(header)
        data_nbytes = int(meta["data_nbytes"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{name} is corrupt: unreadable metadata header ({e})") from None
    expected = _PREFIX.size + header_len + data_nbytes + _DIGEST_SIZE
    if size is not None and size != expected:
        what = "truncated" if size < expected else "corrupt (trailing bytes)"
        raise CheckpointError(f"{name} is {what}: {size} bytes on disk, the header says {expected}")
    if header_only and size is not None:
        return meta, None
    digest = hashlib.sha256(prefix)
    digest.update(header)
    data = bytearray(data_nbytes) if keep_data else None
    done = 0
    while done < data_nbytes:
        chunk = f.read(min(_CHUNK, data_nbytes - done))
        if not chunk:
            raise CheckpointError(f"{name} is truncated: array data ends after {done} of {data_nbytes} "
                                  "bytes")
        digest.update(chunk)
        if keep_data:
            data[done:done + len(chunk)] = chunk
        done += len(chunk)
    stored = f.read(_DIGEST_SIZE)
    if len(stored) < _DIGEST_SIZE:
        raise CheckpointError(f"{name} is truncated: the checksum at its end is missing")
    if stored != digest.digest():
        raise CheckpointError(f"{name} is corrupt: sha256 checksum mismatch")
    return meta, data


def _read_src(src, *, keep_data: bool, header_only: bool = False):
    if isinstance(src, (str, os.PathLike)):
        name = f"checkpoint {os.fspath(src)!r}"
        try:
            with open(src, "rb") as f:
                return _read(f, name, keep_data=keep_data, size=os.fstat(f.fileno()).st_size,
                             header_only=header_only)
        except FileNotFoundError:
            raise FileNotFoundError(f"{name} does not exist") from None
    name = f"checkpoint {getattr(src, 'name', '<file object>')!r}"
    return _read(src, name, keep_data=keep_data)


def _fit_templates(meta, keyed, name, params_only=False):
    """Check the checkpoint's array table against the template leaves; error listing every difference."""
    table = {entry["key"]: entry for entry in meta["arrays"]
             if not params_only or entry["key"].startswith("params/")}
    template_keys = [key for key, _ in keyed]
    missing = [k for k in template_keys if k not in table]
    unexpected = [k for k in table if k not in set(template_keys)]
    mismatched = []
    for key, leaf in keyed:
        if key in table:
            shape, dtype = _leaf_spec(leaf)
            entry = table[key]
            if tuple(entry["shape"]) != shape or entry["dtype"] != dtype.name:
                mismatched.append(f"{key}: checkpoint {entry['dtype']}{tuple(entry['shape'])} vs template "
                                  f"{dtype.name}{shape}")
    if missing or unexpected or mismatched:
        parts = [f"{label} ({len(items)}): {', '.join(items)}" for label, items in
                 (("missing from checkpoint", missing), ("unexpected in checkpoint", unexpected),
                  ("shape/dtype differs", mismatched)) if items]
        raise CheckpointError(f"{name} does not fit the params/opt_state templates; " + "; ".join(parts))
    return table


def _load(src, params, opt_state=None, *, params_only=False):
    meta, data = _read_src(src, keep_data=True)
    name = f"checkpoint {os.fspath(src)!r}" if isinstance(src, (str, os.PathLike)) else "checkpoint"
    keyed, treedef = _flatten(params, opt_state, params_only=params_only)
    table = _fit_templates(meta, keyed, name, params_only)
    leaves = []
    for key, leaf in keyed:
        entry = table[key]
        dtype = jnp.dtype(entry["dtype"])
        arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(entry["shape"], dtype=np.int64)),
                            offset=entry["offset"]).reshape(entry["shape"])
        leaves.append(_restore_leaf(arr, leaf))
    return jax.tree_util.tree_unflatten(treedef, leaves), int(meta["iteration"])


def load_checkpoint(src, params, opt_state):
    """Restore (params, opt_state, iteration); `params`/`opt_state` are templates giving the structure.

    Template leaves may be arrays or `jax.ShapeDtypeStruct`s; jax.Array templates are restored onto their
    sharding. Dtypes must match exactly and values come back bit for bit.
    """
    tree, iteration = _load(src, params, opt_state)
    return tree["params"], tree["opt_state"], iteration


def load_params(src, params):
    """Restore only the parameters (for inference): the optimizer state in the file is skipped, whatever
    optimizer wrote it. `params` is a template as in `load_checkpoint`."""
    return _load(src, params, params_only=True)[0]["params"]


def read_extra(src) -> dict:
    """The `extra` dict saved with a checkpoint (verified, arrays not loaded)."""
    return _read_src(src, keep_data=False)[0]["extra"]


def read_iteration(src) -> int:
    """The iteration saved with a checkpoint (verified, arrays not loaded)."""
    return int(_read_src(src, keep_data=False)[0]["iteration"])


# ---- a directory of checkpoints ------------------------------------------------------------------

def checkpoint_path(directory, iteration: int) -> Path:
    """The file name of iteration's checkpoint in `directory`: ckpt_00001000.ckpt."""
    return Path(directory) / f"ckpt_{int(iteration):08d}.ckpt"


def _listed(directory):
    """[(iteration, path)] of the checkpoint files in `directory`, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME_RE.match(p.name))]
    return sorted(found, key=lambda item: item[0], reverse=True)


def is_valid(path, *, full: bool = True) -> bool:
    """Whether `path` is a complete checkpoint: checksum verified (reads the whole file) if `full`, else
    only its header and size (cheap; catches truncation)."""
    try:
        _read_src(path, keep_data=False, header_only=not full)
        return True
    except (CheckpointError, OSError):
        return False


def latest_checkpoint(directory) -> Path | None:
    """The newest valid checkpoint in `directory` by iteration, skipping (with a warning) corrupt ones."""
    for _, path in _listed(directory):
        try:
            _read_src(path, keep_data=False)
            return path
        except (CheckpointError, OSError) as e:
            warnings.warn(f"skipping unusable checkpoint: {e}", stacklevel=2)
    return None


def prune_checkpoints(directory, keep: int) -> list[Path]:
    """Delete all but the newest `keep` valid checkpoints (and stale temp files); return what was removed.

    Validity here is the cheap header-and-size check (the files were written atomically by us; a full
    checksum pass over every kept file at each save would cost as much as the saves). Files newer than
    the oldest kept checkpoint are left alone even if broken. Assumes one writer per directory: temp files
    of an in-flight save by another process would be removed.
    """
    if keep < 1:
        raise ValueError(f"prune_checkpoints keep must be >= 1, got {keep}")
    kept, removed = 0, []
    for _, path in _listed(directory):
        if kept < keep:
            kept += is_valid(path, full=False)
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    for tmp in Path(directory).glob(".ckpt_*.ckpt.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
