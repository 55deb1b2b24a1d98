"""Tokenize a text file into one .npy array of token ids, streaming, optionally over worker processes.

    python -m tokenizer.encode --tokenizer DIR --input FILE --output FILE.npy [--workers N]

The ids (uint16, or uint32 when the vocabulary has more than 65,536 ids) are streamed into a temp file
behind a fixed-size .npy header, which is rewritten with the final length before the temp file is renamed
over the output: memory stays bounded, `np.load(path, mmap_mode="r")` works, and a failure leaves no
partial output. Workers encode byte ranges cut where a special token starts, so the result equals
single-process `Tokenizer.encode` of the whole file.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tokenizer.pretokenize import find_chunk_boundaries, safe_split_token
from tokenizer.textio import atomic_write, decode_utf8
from tokenizer.tokenizer import Tokenizer
from tokenizer.workers import process_pool

BLOCK_BYTES = 1 << 20  # text decoded and encoded at a time
RANGE_BYTES = 8 << 20  # about this much of the file per worker task (more tasks than workers balances load)
NPY_HEADER_BYTES = 128  # room for any 1-D shape; .npy headers are padded to a multiple of 64 anyway


@dataclass(frozen=True)
class EncodeStats:
    n_bytes: int  # size of the input file
    n_tokens: int  # length of the output array
    seconds: float  # wall time of encode_file
    dtype: str  # "uint16" or "uint32"
    ranges: int  # byte ranges encoded separately (1 unless workers > 1 and a special token can cut the file)

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / max(self.n_tokens, 1)

    @property
    def mb_per_s(self) -> float:
        return self.n_bytes / 1e6 / max(self.seconds, 1e-9)


def ids_dtype(tokenizer: Tokenizer) -> np.dtype:
    return np.dtype(np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32)


def npy_header(dtype: np.dtype, length: int) -> bytes:
    """A version 1.0 .npy header for a 1-D little-endian array, always NPY_HEADER_BYTES long."""
    meta = f"{{'descr': '{dtype.newbyteorder('<').str}', 'fortran_order': False, 'shape': ({length},), }}"
    body = meta.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def iter_text(path: str | os.PathLike, start: int = 0, end: int | None = None,
              block: int = BLOCK_BYTES) -> Iterator[tuple[str, int]]:
    """(text, bytes consumed) for the bytes [start, end) of a file, block by block, cut between characters.

    Invalid UTF-8 raises textio.InvalidUTF8Error naming the file and the absolute byte offset.
    """
    end = os.path.getsize(path) if end is None else end
    with open(path, "rb") as f:
        f.seek(start)
        pos, carry = start, b""  # carry: the bytes of a character cut by the block edge
        while pos < end:
            read = f.read(min(block, end - pos))
            if not read:
                raise ValueError(f"{path}: file ended at byte {pos}, before byte {end} (changed while reading?)")
            data, pos = carry + read, pos + len(read)
            cut = len(data) if pos >= end else _utf8_cut(data)
            yield decode_utf8(data[:cut], path, pos - len(data)), cut
            carry = data[cut:]


def _utf8_cut(data: bytes) -> int:
    """The largest i such that data[:i] ends on a character boundary (if data is valid UTF-8)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead (or ASCII) byte: does its character fit?
            need = 1 if byte < 0x80 else 2 if byte >= 0xC0 and byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if need <= back else len(data) - back
    return len(data)


def _encode_range(tokenizer: Tokenizer, path, start: int, end: int, out, dtype, bar=None) -> int:
    """Stream the ids of bytes [start, end) of path into the binary file `out`; returns how many."""
    n = 0
    texts = iter_text(path, start, end)

    def chunks():
        for text, consumed in texts:
            yield text
            if bar is not None:
                bar.update(consumed)

    for ids in tokenizer.encode_stream(chunks()):
        if ids:
            out.write(np.asarray(ids, dtype=dtype).tobytes())
            n += len(ids)
    return n


_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer  # inherited as is under fork; rebuilt from vocab and merges otherwise


def _encode_range_to_part(path: str, start: int, end: int, part: str, dtype: str) -> int:
    """Worker task: write the ids of one byte range to its own part file."""
    with open(part, "wb") as out:
        return _encode_range(_worker_tokenizer, path, start, end, out, np.dtype(dtype))


def _ranges(tokenizer: Tokenizer, path: str, size: int, workers: int) -> list[tuple[int, int]]:
    """Byte ranges for the workers: cut where a special token starts, so no cut changes the ids."""
    token = safe_split_token(tokenizer.special_tokens)
    if workers <= 1 or token is None:
        return [(0, size)]
    n = max(2 * workers, math.ceil(size / RANGE_BYTES))
    bounds = find_chunk_boundaries(path, n, token.encode("utf-8"))
    return list(zip(bounds[:-1], bounds[1:]))


def encode_file(tokenizer: Tokenizer, input_path: str | os.PathLike, output_path: str | os.PathLike,
                workers: int = 1, progress: bool = False) -> EncodeStats:
    """Encode a UTF-8 text file into a 1-D .npy array of ids, equal to tokenizer.encode(whole text)."""
    t0 = time.perf_counter()
    path, output = os.fspath(input_path), Path(output_path)
    if not os.path.isfile(path):
        raise ValueError(f"input file not found: {path}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    output.parent.mkdir(parents=True, exist_ok=True)
    size, dtype = os.path.getsize(path), ids_dtype(tokenizer)
    ranges = _ranges(tokenizer, path, size, workers)
    parts_dir = None
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="encode", disable=None if progress else True)
    try:
        with atomic_write(output) as out:
            out.write(npy_header(dtype, 0))
            if len(ranges) == 1:
                n_tokens = _encode_range(tokenizer, path, 0, size, out, dtype, bar)
            else:
                parts_dir = tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.parts.")
                n_tokens = _encode_parallel(tokenizer, path, ranges, parts_dir, out, dtype, workers, bar)
            out.seek(0)
            out.write(npy_header(dtype, n_tokens))
    finally:
        bar.close()
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)
    return EncodeStats(size, n_tokens, time.perf_counter() - t0, dtype.name, len(ranges))


def _encode_parallel(tokenizer, path, ranges, parts_dir, out, dtype, workers, bar) -> int:
    """Ranges encoded by a process pool into part files, appended to `out` in order as they finish.

    At most 2 * workers ranges are in flight, so pending part files stay bounded on disk too.
    """
    n_tokens = 0
    with process_pool(workers, initializer=_init_worker, initargs=(tokenizer,)) as pool:
        todo, running = deque(enumerate(ranges)), deque()
        while todo or running:
            while todo and len(running) < 2 * workers:
                i, (start, end) = todo.popleft()
                part = os.path.join(parts_dir, f"{i:06d}.bin")
                running.append((part, end - start, pool.submit(_encode_range_to_part, path, start, end, part, dtype.str)))
            part, nbytes, future = running.popleft()
            n_tokens += future.result()
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            os.unlink(part)
            bar.update(nbytes)
    return n_tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenizer.encode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, help="directory written by Tokenizer.save / tokenizer.train")
    parser.add_argument("--input", required=True, help="UTF-8 text file")
    parser.add_argument("--output", required=True, help="output .npy file (uint16 ids, uint32 for big vocabularies)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    try:
        tokenizer = Tokenizer.load(args.tokenizer)
        stats = encode_file(tokenizer, args.input, args.output, workers=args.workers, progress=True)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.input}: {stats.n_bytes:,} bytes -> {stats.n_tokens:,} tokens ({stats.dtype}) in {args.output}")
    print(f"compression {stats.bytes_per_token:.3f} bytes/token, {stats.mb_per_s:.2f} MB/s "
          f"({stats.seconds:.2f} s, {stats.ranges} byte range(s) over {args.workers} worker(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
