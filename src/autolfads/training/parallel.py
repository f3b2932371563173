"""Data parallelism over batch shards in threads: how one process uses several CPU cores.

LFADS steps are long chains of small ops (a GRU step on 200 x 64 states is ~10 us of arithmetic
per op). Spreading each op over cores with OpenMP costs a barrier per op, and when a core is
also busy with anything else (another worker, another process) every barrier waits for a
descheduled thread: a 2-thread step can take 10x as long as a 1-thread one. Instead each of n
threads runs the whole forward and backward pass of its share of the trials with torch's
intra-op parallelism at 1 thread, and the threads meet once per step.

The results are those of the unsharded batch: random draws are made for the whole batch in the
calling thread (same RNG stream as an unsharded pass) and sliced; each shard's costs are
weighted by its share of what the batch cost averages over; per-shard gradients are summed in a
fixed order (not accumulated by whichever thread finishes first), so a run is reproducible.
Sums are reassociated, so the last bits differ from an unsharded pass.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

MIN_ROWS = 16  # do not split a batch into shards smaller than this


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _one_intra_op_thread() -> None:
    torch.set_num_threads(1)  # per thread: OpenMP and MKL thread counts are per calling thread


class Shards:
    """Runs a function on shards of a batch in n threads (n = 1: in the calling thread only)."""

    def __init__(self, n: int = 1):
        self.n = max(1, int(n))
        self._pool = None
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        if self.n > 1:
            self._pool = ThreadPoolExecutor(self.n - 1, thread_name_prefix="lfads-shard",
                                            initializer=_one_intra_op_thread)
            weakref.finalize(self, self._pool.shutdown, wait=False)

    def split(self, rows: int) -> list[slice]:
        """Near-equal contiguous row ranges, at most n, none smaller than MIN_ROWS (but one)."""
        k = max(1, min(self.n, rows // MIN_ROWS))
        edges = [round(i * rows / k) for i in range(k + 1)]
        return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """[fn(item) for item in items]: the first in the calling thread, the rest in the pool;
        when the caller is done it also runs, from the end, the items no thread has started
        (so uneven items, as the random draws of noise.py, share out the work)."""
        if self._pool is None or len(items) == 1:
            return [fn(it) for it in items]
        if os.getpid() != self._pid:  # a forked child has none of the parent's threads
            self._start()
        grad = torch.is_grad_enabled()  # thread-local: the pool's threads follow the caller

        def call(item):
            with torch.set_grad_enabled(grad):
                return fn(item)

        futures = [self._pool.submit(call, it) for it in items[1:]]
        out: list = [None] * len(items)
        try:
            out[0] = fn(items[0])
            for i in reversed(range(len(futures))):
                if futures[i].cancel():
                    out[i + 1] = fn(items[i + 1])
        finally:
            for i, f in enumerate(futures):
                if not f.cancelled():
                    out[i + 1] = f.result()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __getstate__(self):  # a Trainer may be deep-copied or pickled: the pool is not
        return {"n": self.n}

    def __setstate__(self, state):
        self.__init__(state["n"])


def setup_cpu_threads(n: int) -> int:
    """Set up this process to use n CPU cores (0: all it may run on); returns n.

    The n cores are used as n threads that each run a shard of the batch (parallel.py), with
    torch's intra-op (OpenMP/MKL) parallelism at one thread, so nothing waits on per-op barriers.
    N workers sharing C cores should each get n = C // N (pbt/ sets cfg.train.threads from
    cpus_per_worker). The inter-op pool can be sized only before it is first used; LFADS runs no
    inter-op work, so a later call that cannot resize it is harmless.
    """
    n = n if n > 0 else available_cores()
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):  # already started or already set
            torch.set_num_interop_threads(1)
    return n


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it to the kernel.

    A training step allocates and frees the same few hundred MB of activations and gradients
    every time. By default glibc serves blocks over its mmap threshold with fresh mmaps and
    trims the heap's free top back to the kernel, so the next step touches new pages: a page
    fault (and a page of zeroing) per 4 KiB, ~10% of a CPU step. Raising the thresholds keeps
    that memory in the process (RSS stays at its peak, which it reaches every step anyway).
    Process-wide; a no-op (False) where the C library is not glibc.
    """
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_threshold = -1, -3
                ok = libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's maximum
                ok = ok and libc.mallopt(m_trim_threshold, 2**30)
                _malloc_tuned = bool(ok)
            except (OSError, AttributeError):
                pass
    return _malloc_tuned


_malloc_tuned: bool | None = None
