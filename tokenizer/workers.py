"""Worker processes shared by BPE training and file encoding."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor


def default_num_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def process_pool(workers: int, **kwargs):
    """A ProcessPoolExecutor (a killed worker raises instead of hanging, unlike multiprocessing.Pool).

    fork on Linux: cheap, and it never re-imports the caller's __main__ (spawn and forkserver do, which
    breaks scripts read from stdin or lacking a main guard). The children run only regex, file reads and
    dict lookups, so a multithreaded parent (one that has started JAX) is no hazard to them, and JAX's
    warning about any fork is silenced here.
    """
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        with ProcessPoolExecutor(workers, mp_context=ctx, **kwargs) as pool:
            yield pool
