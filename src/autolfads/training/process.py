"""Setting up a process to train in: CPU threads, glibc's malloc and the global RNG seeds.

These are process-wide, so the code that owns the process sets them, once, before it builds a
Trainer: api.train, api's PBT path, a PBT worker (pbt/trainable.py) and the benchmarks. A Trainer
changes nothing outside its own objects, so building one (in a test, or a second one in the same
process) leaves thread counts and random streams alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys

import numpy as np
import torch

from autolfads.config import TrainConfig
from autolfads.errors import UserInputError

_SAID: set[str] = set()  # warnings given in this process (each once)


def resolve_device(name: str) -> torch.device:
    """train.device as a torch device: "auto" is the GPU where torch sees one it can run on. A
    GPU that is not there, or that this torch has no kernels for, is the user's to fix
    (UserInputError), not a traceback from deep in torch."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        why = missing_kernels()
        if why:  # an old GPU beside a new torch: the run still works, on the CPU
            if why not in _SAID:
                _SAID.add(why)
                print(f"warning: training on the CPU: {why}", file=sys.stderr, flush=True)
            return torch.device("cpu")
        return torch.device("cuda")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else "no GPU is visible (check nvidia-smi)")
            raise UserInputError(f"train.device={name}: CUDA is not available here ({why}); "
                                 "use train.device=auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"train.device={name}: this machine has "
                                 f"{torch.cuda.device_count()} GPU(s), numbered from 0")
        why = missing_kernels(device.index)
        if why:
            raise UserInputError(f"train.device={name}: {why}")
    return device


# PyTorch's last CUDA build with kernels for GPUs before Turing (Pascal P4/P100, Volta V100);
# its default (PyPI) CUDA 13 build starts at compute capability 7.5.
LEGACY_TORCH_INDEX = "https://download.pytorch.org/whl/cu126"


def missing_kernels(index: int | None = None) -> str | None:
    """Why this torch cannot run on the GPU (its build has no kernels for the GPU's
    architecture, so the first operation would fail with "no kernel image is available"), with
    the fix; None where it can."""
    if getattr(torch.version, "hip", None):  # ROCm names AMD targets (gfx90a): not ours to judge
        return None
    cap = torch.cuda.get_device_capability(index)
    archs = torch.cuda.get_arch_list()
    if kernels_for(cap, archs):
        return None
    if cap < (5, 0):
        fix = "no current PyTorch build has them: train on the CPU (train.device=cpu)"
    elif cap < (7, 5):
        fix = (f"install the CUDA 12.6 build: pip install torch=={torch.__version__.split('+')[0]}"
               f" --index-url {LEGACY_TORCH_INDEX}")
    else:
        fix = "install a newer torch"
    return (f"this torch ({torch.__version__}) has no kernels for the "
            f"{torch.cuda.get_device_name(index)} (compute capability {cap[0]}.{cap[1]}; it was "
            f"built for {', '.join(archs)}); {fix}")


def kernels_for(cap: tuple[int, int], archs: list[str]) -> bool:
    """Whether a torch built for `archs` (torch.cuda.get_arch_list()) runs on a GPU of compute
    capability `cap`: code for the same major version and an equal or lower minor one (sm_XY,
    compute_XY; an "a" suffix: that exact GPU only), or plain PTX of a lower version
    (compute_XY), which the driver compiles for newer GPUs."""
    found = [m for m in (re.fullmatch(r"(sm|compute)_(\d+)(\d)([a-z]?)", a) for a in archs) if m]
    if not found:  # the build does not say in these terms: let torch answer
        return True
    for m in found:
        built, suffix = (int(m[2]), int(m[3])), m[4]
        same_family = built[0] == cap[0] and built[1] <= cap[1]
        if built == cap or suffix != "a" and same_family:
            return True
        if m[1] == "compute" and not suffix and built < cap:
            return True
    return False


def setup_process(train: TrainConfig) -> int:
    """Set this process up to train as `train` says; returns the number of shard threads to
    give the Trainer (Trainer(..., shard_threads=...)): train.threads on a CPU, 1 on a GPU.

    Seeds torch's and numpy's global generators with train.seed: they fix the model's initial
    weights and every random draw of training, until a checkpoint's RNG state replaces them
    (Trainer.load_checkpoint).
    """
    threads = 1
    on_cpu = resolve_device(train.device).type == "cpu"
    if on_cpu:
        threads = setup_cpu_threads(train.threads)
        keep_freed_memory()
    else:
        if train.threads > 0:  # workers sharing a GPU share the host's cores too
            torch.set_num_threads(train.threads)
        # cuDNN would run the plain form's nn.GRU encoders in TF32 (10-bit mantissa) while the
        # fused form and the CPU run FP32: both forms compute the same numbers on every device.
        torch.backends.cudnn.allow_tf32 = False
    choose_loops(native=on_cpu and train.native_cells)  # the kernels are CPU-only
    torch.manual_seed(train.seed)
    np.random.seed(train.seed % 2**32)
    return threads


def choose_loops(native: bool) -> None:
    """The recurrences' loops for this process: with the compiled GRU cell (train.native_cells;
    built on first use, once per machine) or the default ones. A warning, not an error, where the
    cell cannot be built: the run is the same without it, only slower."""
    from autolfads.model.fused import loops

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if native:
        why = loops.use_native(say)
        if why is None:
            return
        say(f"warning: train.native_cells: {why}; training without them")
    loops.use_default()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    fault (and a page of zeroing) per 4 KiB, a visible part of a CPU step. Raising the
    thresholds keeps that memory in the process (RSS stays at its peak, which it reaches every
    step anyway). Process-wide; a no-op (False) where the C library is not glibc.
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
