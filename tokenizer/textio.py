"""File I/O shared by the tokenizer and jaxlm: strict UTF-8 reading (a bad byte is reported with the file
name and its absolute byte offset) and atomic writing (never a partial file)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


class InvalidUTF8Error(ValueError):
    """Input that is not valid UTF-8; `path` and `offset` (absolute, in bytes) locate the first bad byte."""

    def __init__(self, path: str | os.PathLike, offset: int, reason: str = ""):
        self.path, self.offset, self.reason = os.fspath(path), offset, reason
        detail = f" ({reason})" if reason else ""
        super().__init__(f"{self.path}: invalid UTF-8 at byte offset {offset}{detail}")

    def __reduce__(self):  # keep path/offset when raised in a worker process and pickled back
        return (type(self), (self.path, self.offset, self.reason))


def decode_utf8(data: bytes, path: str | os.PathLike = "<bytes>", base_offset: int = 0) -> str:
    """Decode `data` as UTF-8; `base_offset` is where `data` starts in `path` (for chunked reads)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidUTF8Error(path, base_offset + e.start, e.reason) from None


def read_text(path: str | os.PathLike, start: int = 0, end: int | None = None) -> str:
    """Read bytes [start, end) of a file (the whole file by default) as strict UTF-8 text."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read() if end is None else f.read(max(0, end - start))
    return decode_utf8(data, path, start)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs):
    """Yield a temp file beside `path`; on success fsync it and rename it over `path`.

    A crash or an exception at any moment leaves the old file (or none), never part of the new one; the
    temp file (`.NAME.*.tmp`) is removed on error. The result gets a normal file's mode (mkstemp's is 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
