"""Data parallelism over batch shards in threads: how one process uses several CPU cores.

LFADS steps are long chains of small ops (one GRU step of a batch is microseconds of arithmetic).
Spreading each op over cores with OpenMP costs a barrier per op, and when a core is also busy
with anything else (another worker, another process) every barrier waits for a descheduled
thread, so a step on several threads can take far longer than on one. Instead each of n threads
runs the whole forward and backward pass of its share of the trials with torch's intra-op
parallelism at 1 thread, and the threads meet once per step (process.py sets that up).

The results are those of the unsharded batch: random draws are made for the whole batch in the
calling thread (same RNG stream as an unsharded pass) and sliced; each shard's costs are
weighted by its share of what the batch cost averages over (model/objective.py: BatchShare);
per-shard gradients are summed in a fixed order (not accumulated by whichever thread finishes
first), so a run is reproducible. Sums are reassociated, so the last bits differ from an
unsharded pass.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

MIN_ROWS = 16  # do not split a batch into shards smaller than this


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
        if self._pool is None or len(items) <= 1:
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

