"""The benchmark's process plumbing (bench/workers.py): a case or worker process that fails or
dies is an error the run reports, never a parent that waits forever."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from bench.workers import collect


def test_a_process_that_dies_without_a_result_is_an_error():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=os._exit, args=(3,))]  # as a segfault or a CUDA abort would
    procs[0].start()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="exit code 3"):
        collect(queue, procs, timeout_s=60)
    assert time.monotonic() - t0 < 30


def test_a_reported_error_is_raised_with_its_text():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=time.sleep, args=(0,)) for _ in range(2)]
    for p in procs:
        p.start()
    queue.put(("ok", 1.5))
    queue.put(("error", "OutOfMemoryError: CUDA out of memory"))
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        collect(queue, procs, timeout_s=60)


def test_results_come_back_in_the_order_they_were_put():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=time.sleep, args=(0,)) for _ in range(2)]
    for p in procs:
        p.start()
    queue.put(("ok", {"a": 1}))
    queue.put(("ok", {"b": 2}))
    assert collect(queue, procs, timeout_s=60) == [{"a": 1}, {"b": 2}]
