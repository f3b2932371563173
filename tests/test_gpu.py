"""The GPU path: which GPUs this torch can run on (on any machine, with torch's answers faked),
and, where a GPU is present (the lent device machine; CI has none), the model, training and
sampling on it against the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_dataset

from autolfads.errors import UserInputError
from autolfads.training import process
from autolfads.training.process import kernels_for, missing_kernels, resolve_device

# torch 2.13's default (PyPI, CUDA 13) build, and its CUDA 12.6 build.
CU13 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]
CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


@pytest.mark.parametrize("cap,archs,runs", [
    ((7, 0), CU13, False),  # V100
    ((6, 0), CU13, False),  # P100
    ((6, 1), CU126, True),  # P4: sm_60 machine code runs on 6.1
    ((7, 0), CU126, True),
    ((7, 5), CU13, True),  # T4
    ((8, 9), CU13, True),  # L4: sm_86 machine code
    ((9, 0), CU13, True),  # H100 / H200
    ((10, 3), ["sm_90a", "sm_100a"], False),  # "a": that exact GPU only
    ((9, 0), ["sm_90a"], True),
    ((12, 1), CU13, True),
    ((13, 0), ["sm_90", "compute_90"], True),  # PTX: compiled for newer GPUs by the driver
    ((13, 0), ["sm_90"], False),
    ((8, 0), [], True),  # the build does not say
    ((9, 4), ["gfx90a", "gfx942"], True),  # ROCm's names: not ours to judge
    ((10, 0), ["compute_90a"], False),  # arch-specific PTX: that GPU only
    ((9, 0), ["compute_90a"], True),
])
def test_which_gpus_a_build_runs_on(cap, archs, runs):
    assert kernels_for(cap, archs) is runs


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch sees one GPU of the given capability, and this torch was built for `archs`."""
    def install(cap=(7, 0), archs=CU13, name="Tesla V100-SXM2-16GB"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: cap)
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: archs)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: name)
        monkeypatch.setattr(process, "_SAID", set())
    return install


def test_a_gpu_this_torch_cannot_run_on(fake_gpu, capsys):
    fake_gpu()
    why = missing_kernels()
    assert "no kernels for the Tesla V100-SXM2-16GB (compute capability 7.0" in why
    assert "--index-url https://download.pytorch.org/whl/cu126" in why
    # Asked for by name: one error line; "auto": the CPU, said once.
    with pytest.raises(UserInputError, match="train.device=cuda: this torch .* no kernels"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu" and resolve_device("auto").type == "cpu"
    err = capsys.readouterr().err
    assert err.count("warning: training on the CPU: this torch") == 1
    fake_gpu(cap=(12, 1), archs=["sm_90"], name="NVIDIA RTX PRO 6000")  # newer than the build
    assert missing_kernels().endswith("install a newer torch")
    fake_gpu(cap=(3, 7), archs=CU126, name="Tesla K80")
    assert missing_kernels().endswith("no current PyTorch build has them: train on the CPU "
                                      "(train.device=cpu)")
    fake_gpu(cap=(9, 0), name="NVIDIA H200")
    assert missing_kernels() is None
    assert resolve_device("auto").type == "cuda" and resolve_device("cuda:0").index == 0


def test_a_gpu_process_keeps_its_share_of_cores_and_fp32(fake_gpu):
    """Workers sharing a GPU get train.threads host threads (as on the CPU), and cuDNN does
    not switch the plain form's encoders to TF32."""
    from autolfads.config import TrainConfig

    fake_gpu(cap=(9, 0), name="NVIDIA H200")
    before = torch.get_num_threads(), torch.backends.cudnn.allow_tf32
    try:
        torch.set_num_threads(2)
        torch.backends.cudnn.allow_tf32 = True
        assert process.setup_process(TrainConfig(device="cuda", threads=1)) == 1
        assert torch.get_num_threads() == 1 and torch.backends.cudnn.allow_tf32 is False
    finally:
        torch.set_num_threads(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


# -- on a GPU -----------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")


@pytest.fixture
def full_fp32():
    """cuDNN runs nn.GRU (the plain form's encoders) in TF32 by default; compare in FP32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@cuda
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
@pytest.mark.parametrize("fused", [True, False])
def test_the_model_on_the_gpu_matches_the_cpu(dtype, rtol, fused, full_fp32):
    """Same weights, same draws: the outputs, loss and gradients on the GPU are the CPU's."""
    from test_fast_path import CASES, OUT_FIELDS, assert_close, build, run

    for case in ("con", "no_con_ext", "con_eval", "clip", "recon_longer_more_outputs"):
        model, data, counts, ext, noise, sample = build(*CASES[case], dtype)
        out_c, loss_c, g_c = run(model, fused, data, counts, ext, noise, sample)
        to = lambda t: None if t is None else t.cuda()  # noqa: E731
        noise_g = type(noise)(**{k: to(v) for k, v in vars(noise).items()})
        # cuDNN's RNN has no backward in eval mode (training never needs one): the plain form's
        # nn.GRU encoders take torch's own GPU kernels for that case.
        # (Not cudnn.flags(): it would switch TF32 back on.)
        torch.backends.cudnn.enabled = fused or model.training
        try:
            out_g, loss_g, g_g = run(model.cuda(), fused, to(data), to(counts), to(ext),
                                     noise_g, sample)
        finally:
            torch.backends.cudnn.enabled = True
        atol = rtol * 1e-3
        for name in OUT_FIELDS:
            assert_close(getattr(out_g, name).cpu(), getattr(out_c, name), f"{case} {name}",
                         rtol, atol)
        assert_close(loss_g.cpu(), loss_c, f"{case} loss", rtol, atol)
        for name in g_c:
            assert_close(g_g[name].cpu(), g_c[name], f"{case} grad {name}", rtol, atol)


@cuda
def test_training_and_sampling_on_the_gpu(tmp_path):
    """A short training on the GPU: finite costs that fall, posterior outputs like the CPU's,
    and a checkpoint that a machine without a GPU loads (a run downloaded to a laptop)."""
    from autolfads.training.loop import Trainer
    from autolfads.training.sampling import posterior_outputs

    ds = tiny_dataset()
    torch.manual_seed(0)
    tr = Trainer(tiny_config(device="cuda", epochs=30), ds)
    assert next(tr.model.parameters()).is_cuda
    tr.fit(early_stop=False)
    costs = [h["valid_recon"] for h in tr.state.history]
    assert np.isfinite(costs).all() and costs[-1] < costs[0]
    post = posterior_outputs(tr, n_samples=8)
    assert all(np.isfinite(v).all() for v in post.values() if isinstance(v, np.ndarray))
    tr.save(tmp_path / "ck.pt")
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)  # no map_location, as the README says
    tensors = [*ck["model"].values(), *ck["best_model"].values(), ck["rng"]["cuda"]]
    tensors += [v for st in ck["optimizer"]["state"].values() for v in st.values()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    cpu = Trainer(tiny_config(device="cpu", epochs=30), ds)
    cpu.load(tmp_path / "ck.pt")
    torch.manual_seed(3)
    on_cpu = posterior_outputs(cpu, n_samples=200)["valid_rates"]
    torch.manual_seed(3)
    on_gpu = posterior_outputs(tr, n_samples=200)["valid_rates"]
    assert np.abs(on_cpu - on_gpu).max() < 0.1 * on_gpu.mean()  # sampling noise only


def test_a_run_says_when_it_leaves_gpus_idle(monkeypatch):
    """Workers train on CPUs unless --workers-per-gpu gives them GPU shares: on a machine (or
    cluster) with GPUs the run says so, unless train.device=cpu says it is meant."""
    import ray

    from autolfads.pbt.session import unused_gpus

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    assert "Ray sees 2 GPU(s) that this run leaves idle" in unused_gpus(0, "auto")
    assert "--workers-per-gpu N" in unused_gpus(0, "auto")
    assert unused_gpus(3, "auto") is None and unused_gpus(0, "cpu") is None
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    assert unused_gpus(0, "auto") is None
