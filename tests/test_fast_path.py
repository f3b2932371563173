"""The fused recurrences (model/fused/) against the plain form of the same model (lfads.py with
`fused` off): same weights, same random draws -> same outputs and the same loss gradients, with
one or several time chunks, and with the time loops compiled (TorchScript) or run as Python."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_MODEL

from autolfads.config import ModelConfig
from autolfads.model import LFADS
from autolfads.model.fused import gru, loops
from autolfads.model.objective import LossWeights, compute_costs, total_loss

# Loss weights such that every cost term (recon, both KLs, L2) contributes to the gradient.
W = LossWeights(kl_ic_scale=0.3, kl_co_scale=0.2, l2_gen_scale=0.5, l2_con_scale=0.7)
OUT_FIELDS = ("obs_params", "factors", "ic_mean", "ic_logvar", "co_mean", "co_logvar",
              "inferred_inputs")

# name: (model overrides, forward options)
CASES = {
    "con": ({}, {}),
    "con_lag0": (dict(ci_lag=0), {}),
    "con_lag3": (dict(ci_lag=3), {}),
    "no_con": (dict(co_dim=0), {}),
    "no_con_ext": (dict(co_dim=0), dict(ext=3)),
    "con_ext": ({}, dict(ext=2)),
    "con_eval": ({}, dict(train=False)),
    "con_no_sample": ({}, dict(sample=False)),
    "con_eval_no_sample": ({}, dict(train=False, sample=False)),
    "no_dropout": (dict(dropout_rate=0.0), {}),
    "clip": (dict(cell_clip=0.05), {}),
    "unequal_encoders": (dict(ic_enc_dim=10, ci_enc_dim=7), {}),
    "recon_longer_more_outputs": (dict(ci_lag=2), dict(recon=4, extra_out=5, ext=2)),
}


def build(overrides: dict, opts: dict, dtype: torch.dtype, seed: int = 0):
    """A small model with non-trivial weights, a batch, its Noise and the extra inputs."""
    torch.manual_seed(seed)
    B, T, N = 5, 9, 6
    cfg = ModelConfig(**{**TINY_MODEL, "dropout_rate": 0.3, "ci_lag": 1, **overrides})
    E = opts.get("ext", 0)
    T_out = T + opts.get("recon", 0)
    n_out = N + opts.get("extra_out", 0)
    model = LFADS(cfg, n_neurons=N, ext_input_dim=E, n_outputs=n_out,
                  recon_seq_len=T_out if opts.get("recon") else None)
    with torch.no_grad():  # move every parameter off its (often zero) initial value
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.to(dtype)
    model.train(opts.get("train", True))
    data = torch.poisson(torch.rand(B, T, N) * 3).to(dtype)
    counts = torch.poisson(torch.rand(B, T_out, n_out) * 3).to(dtype)
    ext = torch.randn(B, T_out, E, dtype=dtype) if E else None
    sample = opts.get("sample", True)
    noise = model.draw_noise(data, sample)
    return model, data, counts, ext, noise, sample


def run(model, fused, data, counts, ext, noise, sample):
    model.fused = fused
    model.zero_grad(set_to_none=True)
    out = model(data, ext, sample=sample, noise=noise)
    loss = total_loss(compute_costs(model, out, counts, W), W)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, loss.detach(), grads


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float, atol: float):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    scale = b.abs().max().item() if b.numel() else 0.0
    err = (a - b).abs().max().item() if b.numel() else 0.0
    assert err <= atol + rtol * scale, f"{what}: max abs err {err:.3g} (scale {scale:.3g})"


@pytest.fixture(params=["scripted", "eager", "native"])
def loop_impl(request, monkeypatch):
    """The time loops compiled with TorchScript, the same functions run as Python, or the
    compiled loops with the GRU cell as compiled kernels (train.native_cells)."""
    if request.param == "native":
        impl, why = loops.native_loops()
        if impl is None:
            pytest.skip(f"native GRU cells: {why}")
    else:
        impl = loops.SCRIPTED if request.param == "scripted" else loops.EAGER
        if impl is None:
            pytest.skip("TorchScript is not available here (or AUTOLFADS_NO_SCRIPT is set)")
    monkeypatch.setattr(loops, "active", impl)


# Gate-buffer rows per chunk of the time loops: with 5 trials, one chunk (the default size),
# two uneven chunks (5 + 4 bins), one bin per chunk.
CHUNK_ROWS = {"one_chunk": None, "two_chunks": 25, "bin_chunks": 5}


@pytest.mark.parametrize("chunking", list(CHUNK_ROWS))
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 2e-4)],
                         ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_matches_plain(case, dtype, rtol, chunking, loop_impl, monkeypatch):
    overrides, opts = CASES[case]
    model, data, counts, ext, noise, sample = build(overrides, opts, dtype)
    B, T = data.shape[:2]
    if CHUNK_ROWS[chunking] is not None:
        monkeypatch.setattr(gru, "CHUNK_ROWS", CHUNK_ROWS[chunking])
        assert len(gru.chunks(T, B)) > 1
    atol = rtol * 1e-3
    out_f, loss_f, g_f = run(model, True, data, counts, ext, noise, sample)
    out_p, loss_p, g_p = run(model, False, data, counts, ext, noise, sample)

    for name in OUT_FIELDS:
        assert_close(getattr(out_f, name), getattr(out_p, name), name, rtol, atol)
    assert_close(loss_f, loss_p, "loss", rtol, atol)
    expected = {n for n, p in model.named_parameters() if p.numel()}
    assert set(g_f) == set(g_p) == expected
    for name in g_p:
        # A gradient is compared against the size of its whole tensor (max-norm).
        assert_close(g_f[name], g_p[name], f"grad {name}", rtol, atol)

    model.fused = True
    with torch.no_grad():  # the no-backward path of the fused recurrences (reused scratch)
        out_n = model(data, ext, sample=sample, noise=noise)
    for name in OUT_FIELDS:
        assert_close(getattr(out_n, name), getattr(out_f, name), f"no_grad {name}", rtol, atol)


def test_fused_follows_the_config():
    assert LFADS(ModelConfig(**TINY_MODEL), n_neurons=4).fused
    assert not LFADS(ModelConfig(**TINY_MODEL, fused=False), n_neurons=4).fused


def test_clip_case_actually_clips():
    """The small-clip case must hit the clip, or its gradient check would prove nothing."""
    model, data, _, ext, noise, sample = build(*CASES["clip"], torch.float64)
    g = []

    def spy(step):
        def wrapped(xg, h):
            g.append(step(xg, h))
            return g[-1]
        return wrapped

    model.gen.step = spy(model.gen.step)
    model.con.step = spy(model.con.step)
    model.fused = False
    with torch.no_grad():
        model(data, ext, sample=sample, noise=noise)
    states = torch.cat([s.flatten() for s in g])
    at_clip = (states.abs() >= 0.05 - 1e-12).double().mean().item()
    assert 0.05 < at_clip < 0.95, f"fraction of states at the clip: {at_clip}"


def test_sharded_step_and_sampling_match_unsharded():
    """Batch shards in threads (training/parallel.py) give the whole batch's costs and gradients
    (laid out as the parameters) and the same posterior samples (the random draws are made once,
    for the whole batch)."""
    from autolfads.model.augment import coordinated_dropout, sample_validation_mask
    from autolfads.training.parallel import Shards
    from autolfads.training.sampling import sample_and_average
    from autolfads.training.step import loss_and_grads

    model, _, _, _, _, _ = build({}, {}, torch.float64)
    B, T, N = 48, 9, 6  # three shards of 16 trials
    counts = torch.poisson(torch.rand(B, T, N) * 3).double()
    sv = sample_validation_mask((B, T, N), 0.2, seed=3)
    x_in, cd_mask = coordinated_dropout(counts * (~sv) / 0.8, 0.3)
    results = []
    for n in (1, 3):
        shards = Shards(n)
        assert len(shards.split(B)) == n
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        terms = loss_and_grads(model, x_in, counts, W, shards, cd_mask, sv)
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        # Laid out as the parameters: fused Adam reads .grad in the parameter's memory order.
        assert all(p.grad.stride() == p.stride() for p in model.parameters() if p.grad is not None)
        torch.manual_seed(6)
        post = sample_and_average(model, counts, n_samples=3, shards=shards)
        model.train()
        results.append((terms, grads, post))
    (t1, g1, p1), (t3, g3, p3) = results
    assert_close(t3, t1, "terms", 1e-10, 1e-12)
    assert g1.keys() == g3.keys()
    for k in g1:
        assert_close(g3[k], g1[k], f"grad {k}", 1e-10, 1e-12)
    for k in p1:
        assert_close(torch.as_tensor(p3[k]), torch.as_tensor(p1[k]), k, 1e-10, 1e-12)


def test_shard_threads_follow_the_callers_grad_mode():
    from autolfads.training.parallel import Shards

    shards = Shards(2)
    with torch.no_grad():
        assert shards.map(lambda _: torch.is_grad_enabled(), [0, 1]) == [False, False]
    assert shards.map(lambda _: torch.is_grad_enabled(), [0, 1]) == [True, True]


def test_shard_map_runs_every_item_once_in_order():
    """Shards.map shares uneven items out between the caller and the pool (the caller also runs
    items no thread has started): each item runs once and results come back in order."""
    import threading
    import time

    from autolfads.training.parallel import Shards

    shards = Shards(2)
    calls, threads = [], set()

    def fn(i):
        calls.append(i)
        threads.add(threading.get_ident())
        time.sleep(0.05 if i == 0 else 0.001)
        return i * i

    assert shards.map(fn, list(range(7))) == [i * i for i in range(7)]
    assert sorted(calls) == list(range(7))
    assert len(threads) == 2
    assert shards.map(fn, []) == []  # e.g. no dropout masks to draw
    shards.close()
