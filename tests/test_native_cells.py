"""The GRU cell as compiled kernels (model/fused/native, train.native_cells): the compiler call,
the kernels against the TorchScript cell they replace, and what happens where they cannot be
built. (The whole model with them against its plain form: test_fast_path.py, "native".)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from autolfads.config import TrainConfig
from autolfads.model.fused import loops, native
from autolfads.training import process
from autolfads.training.process import setup_process


def test_compile_command_is_the_exact_argv():
    argv = native.compile_command("g++", Path("/src/gru_cell.cpp"), Path("/cache/x.so"),
                                  ["/inc/a", "/inc/b"], "/torch/lib", True)
    assert argv == [
        "g++", "-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math",
        "-fopenmp-simd", "-std=c++20", "-fPIC", "-shared", "-D_GLIBCXX_USE_CXX11_ABI=1",
        "-I/inc/a", "-I/inc/b", "/src/gru_cell.cpp", "-o", "/cache/x.so", "-L/torch/lib",
        "-lc10", "-ltorch_cpu", "-Wl,-rpath,/torch/lib"]


def test_library_is_cached_per_flags_and_under_xdg_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a, b = native.library_path(["g++", "-O3"]), native.library_path(["g++", "-O2"])
    assert a != b and a.name == b.name == "gru_cell.so"
    assert a.is_relative_to(tmp_path / "autolfads" / "native")
    assert native.library_path(["g++", "-O3"]) == a


def test_failed_build_says_why_and_leaves_no_file(tmp_path):
    fail = "import sys; sys.stderr.write('line 1\\nerror: no such header\\n'); sys.exit(1)"
    out = tmp_path / "k" / "gru_cell.so"
    out.parent.mkdir()
    why = native._build(lambda o: [sys.executable, "-c", fail, str(o)], out)
    assert why is not None and "error: no such header" in why
    assert list(out.parent.iterdir()) == []
    silent = native._build(lambda o: [sys.executable, "-c", "raise SystemExit(3)"], out)
    assert silent == "the compiler exited with status 3"


def test_a_damaged_library_is_rebuilt_not_loaded(tmp_path):
    """A library cut short (a full disk, a killed copy) can crash the process that loads it:
    only the file a build wrote, with its checksum, counts as built."""
    out = tmp_path / "gru_cell.so"
    write = "import sys; open(sys.argv[1], 'wb').write(bytes(range(256)) * 40)"
    assert native._build(lambda o: [sys.executable, "-c", write, str(o)], out) is None
    assert native._intact(out)
    out.write_bytes(out.read_bytes()[:1000])
    assert not native._intact(out)
    out.with_name("gru_cell.so.sha256").unlink()
    assert not native._intact(out)


def test_without_a_compiler_training_warns_and_keeps_its_loops(monkeypatch, capsys):
    monkeypatch.setattr(loops, "_native", [])
    monkeypatch.setattr(native, "load", lambda say=None: "no C++ compiler found (set CXX)")
    before = loops.active
    setup_process(TrainConfig(device="cpu", threads=1, native_cells=True))
    err = capsys.readouterr().err
    assert "warning: train.native_cells: no C++ compiler found" in err
    assert loops.active is before


@pytest.fixture(scope="module")
def built():
    impl, why = loops.native_loops()
    if impl is None:
        pytest.skip(f"native GRU cells: {why}")
    return impl


def cell_inputs(G: int, B: int, H: int, seed: int = 0):
    """Gate buffers and states as the encoders' loops hold them: steps of (G, c, B, .) tensors,
    so a step's rows are strided (select(1, j) of a 4-D buffer)."""
    g = torch.Generator().manual_seed(seed)
    P = 3 * torch.randn(G, 3, B, 4 * H, generator=g)
    hs = torch.randn(G, 4, B, H, generator=g)
    return P, hs


@pytest.mark.parametrize("clip", [0.0, 0.3])
def test_kernels_match_the_cell_they_replace(built, clip):
    G, B, H = 3, 7, 10
    P, hs = cell_inputs(G, B, H)
    P_ref = P.clone()
    h, out, out_ref = hs.select(1, 0), hs.select(1, 1).clone(), hs.select(1, 1).clone()
    torch.ops.autolfads.gru_cell_forward(P.select(1, 1), h, out, H, clip)
    loops.cell_forward(P_ref.select(1, 1), h, out_ref, torch.tensor(-1.0), H, clip)
    if clip:
        assert (out_ref.abs() == clip).any()  # the case clips
    torch.testing.assert_close(P, P_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)

    dh = torch.randn(G, B, H)
    d, d_ref = torch.zeros(G, 3, B, 4 * H), torch.zeros(G, 3, B, 4 * H)
    hz = torch.ops.autolfads.gru_cell_backward(dh, P.select(1, 1), h, d.select(1, 2), H)
    hz_ref = loops.cell_backward(dh, P_ref.select(1, 1), h, d_ref.select(1, 2),
                                 torch.empty(G, B, H), H)
    torch.testing.assert_close(d, d_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hz, hz_ref, rtol=1e-5, atol=1e-6)


def test_kernels_pass_nan_and_extremes_on(built):
    """NaN must reach the loss (training stops on it); huge gate inputs saturate, not overflow."""
    H = 8
    P = torch.zeros(4, 4 * H)
    P[0, H] = float("nan")  # a reset gate
    P[1, 3 * H:] = float("nan")  # a candidate state
    P[0, 2 * H + 1] = torch.tensor(0x7FC000FF, dtype=torch.int32).view(torch.float32)  # NaN
    P[2, H: 3 * H] = 1e30  # gates fully open
    P[3, H: 3 * H] = -1e30  # gates shut
    h, out = torch.ones(4, H), torch.empty(4, H)
    torch.ops.autolfads.gru_cell_forward(P, h, out, H, 5.0)
    assert out[0, :2].isnan().all() and out[1].isnan().all()  # the second: a NaN with payload
    assert out[0, 2:].isfinite().all()
    torch.testing.assert_close(out[2], h[2])  # z = 1: the state is kept
    torch.testing.assert_close(out[3], torch.zeros(H))  # z = 0, r = 0: n = tanh(0)


def test_kernels_refuse_what_they_were_not_built_for(built):
    H = 4
    with pytest.raises(RuntimeError, match="rows contiguous"):
        torch.ops.autolfads.gru_cell_forward(torch.zeros(4 * H, 3).t(), torch.zeros(3, H),
                                             torch.zeros(3, H), H, 0.0)
    with pytest.raises(RuntimeError, match="different dtypes"):
        torch.ops.autolfads.gru_cell_forward(torch.zeros(3, 4 * H), torch.zeros(3, H).double(),
                                             torch.zeros(3, H), H, 0.0)
    with pytest.raises(RuntimeError, match="different numbers of rows"):
        torch.ops.autolfads.gru_cell_forward(torch.zeros(3, 4 * H), torch.zeros(2, H),
                                             torch.zeros(3, H), H, 0.0)
    with pytest.raises(RuntimeError, match="4H wide"):  # would read past the rows' ends
        torch.ops.autolfads.gru_cell_forward(torch.zeros(3, 4 * H), torch.zeros(3, H),
                                             torch.zeros(3, H), H + 1, 0.0)


def test_the_switch_follows_each_setup_and_the_device(built, monkeypatch):
    monkeypatch.setattr(loops, "active", loops.active)  # restored after the test
    setup_process(TrainConfig(device="cpu", threads=1, native_cells=True))
    assert loops.active is built
    setup_process(TrainConfig(device="cpu", threads=1))
    assert loops.active is (loops.SCRIPTED or loops.EAGER)
    setup_process(TrainConfig(device="cpu", threads=1, native_cells=True))
    # a model moved off the CPU later in the same process (from Python) runs the default loops
    assert loops.on(torch.zeros(1)) is built
    assert loops.on(torch.empty(1, device="meta")) is (loops.SCRIPTED or loops.EAGER)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    monkeypatch.setattr(process, "missing_kernels", lambda index=None: None)  # ... it can use
    setup_process(TrainConfig(device="cuda", native_cells=True))  # CPU-only kernels
    assert loops.active is (loops.SCRIPTED or loops.EAGER)


def test_the_native_loops_run_the_kernels(built, monkeypatch):
    """The equivalence tests (test_fast_path.py, "native") would pass just as well if the loops
    still called the TorchScript cell: here the profiler sees only the kernels."""
    from conftest import TINY_MODEL

    from autolfads.config import ModelConfig
    from autolfads.model import LFADS

    monkeypatch.setattr(loops, "active", built)
    model = LFADS(ModelConfig(**TINY_MODEL), n_neurons=6).train()
    x = torch.poisson(torch.rand(4, 7, 6) * 2)
    with torch.profiler.profile() as prof:
        model(x).factors.sum().backward()
    calls = {e.key: e.count for e in prof.key_averages()}
    # Forward and backward of the IC/CI encoder stack, controller and generator: 7 steps each.
    assert calls.get("autolfads::gru_cell_forward", 0) >= 3 * 7
    assert calls.get("autolfads::gru_cell_backward", 0) >= 3 * 7
    assert "aten::sigmoid_" not in calls and "aten::sigmoid_backward" not in calls
