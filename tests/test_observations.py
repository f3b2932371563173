"""Observation models (model/observations/): each likelihood against scipy.stats, gradients by
finite differences in float64, means, the null start, and auto's choice with its checks."""

import numpy as np
import pytest
import scipy.stats as st
import torch

from autolfads.errors import UserInputError
from autolfads.model.augment import gradient_only_through
from autolfads.model.observations import MODELS, build
from autolfads.model.observations.choose import check, choose, resolve

B, T, N = 3, 5, 4


def _data(name: str, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if name == "poisson":
        x = rng.poisson(2.0, size=(B, T, N))
    elif name == "gamma":
        x = rng.gamma(3.0, 0.7, size=(B, T, N))
    elif name == "zero_inflated_gamma":
        x = rng.gamma(2.0, 0.5, size=(B, T, N)) + 0.2
        x[rng.random((B, T, N)) < 0.6] = 0.0
    else:
        x = rng.normal(5.0, 3.0, size=(B, T, N))
    return torch.as_tensor(x, dtype=torch.float64)


def _params(model, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(B, T, model.n_params * N, generator=g, dtype=torch.float64)


def _scipy_logpdf(name: str, model, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """log p(x) from scipy.stats for the readout parameters p, as each module documents them."""
    k = p.reshape(B, T, model.n_params, N)
    if name == "poisson":
        return st.poisson.logpmf(x, np.exp(k[:, :, 0]))
    if name == "gamma":
        mu, shape = np.exp(k[:, :, 0]), np.exp(k[:, :, 1])
        return st.gamma.logpdf(x, a=shape, scale=mu / shape)
    if name == "zero_inflated_gamma":
        mu, shape, q = np.exp(k[:, :, 0]), np.exp(k[:, :, 1]), 1 / (1 + np.exp(-k[:, :, 2]))
        loc = model.loc.numpy()
        event = np.log(q) + st.gamma.logpdf(x - loc, a=shape, scale=mu / shape)
        return np.where(x > 0, event, np.log(1 - q))
    center, spread = model.center.numpy(), model.spread.numpy()
    mean = center + spread * k[:, :, 0]
    sd = np.exp(0.5 * (2 * np.log(spread) + k[:, :, 1]))
    return st.norm.logpdf(x, loc=mean, scale=sd)


def _scipy_mean(name: str, model, p: np.ndarray) -> np.ndarray:
    k = p.reshape(B, T, model.n_params, N)
    if name == "poisson":
        return st.poisson.mean(np.exp(k[:, :, 0]))
    if name == "gamma":
        shape = np.exp(k[:, :, 1])
        return st.gamma.mean(a=shape, scale=np.exp(k[:, :, 0]) / shape)
    if name == "zero_inflated_gamma":
        shape, q = np.exp(k[:, :, 1]), 1 / (1 + np.exp(-k[:, :, 2]))
        above = st.gamma.mean(a=shape, scale=np.exp(k[:, :, 0]) / shape)
        return q * (model.loc.numpy() + above)
    return model.center.numpy() + model.spread.numpy() * k[:, :, 0]


@pytest.mark.parametrize("name", list(MODELS))
def test_likelihood_and_mean_match_scipy(name):
    x = _data(name)
    model = build(name, x).double()
    p = _params(model)
    nll = model.nll(x, p)
    assert nll.shape == (B, T, N)
    expected = -_scipy_logpdf(name, model, x.numpy(), p.numpy())
    np.testing.assert_allclose(nll.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.mean(p).numpy(), _scipy_mean(name, model, p.numpy()),
                               rtol=1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_cost_value_and_gradient(name):
    """cost = sum(weight * nll) with the gradient only through the CD mask: checked against the
    plain composition, and the nll's own gradient against finite differences (float64)."""
    x = _data(name)
    model = build(name, x).double()
    p0 = _params(model)
    g = torch.Generator().manual_seed(2)
    mask = (torch.rand(B, T, N, generator=g) < 0.5).double()
    weight = torch.rand(B, T, N, generator=g, dtype=torch.float64)
    data_term = model.data_term(x)
    for w, m in [(None, None), (None, mask), (weight, mask)]:
        pa = p0.clone().requires_grad_(True)
        cost, nll = model.cost(x, pa, w, m, data_term)
        cost.backward()
        pb = p0.clone().requires_grad_(True)
        through = gradient_only_through(model.nll(x, pb), m)
        plain = through.mean() if w is None else (through * w).sum()
        plain.backward()
        assert torch.allclose(cost, plain, rtol=1e-12)
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-10, atol=1e-14)
        assert torch.allclose(nll, model.nll(x, p0), rtol=1e-12)
    assert torch.autograd.gradcheck(lambda p: model.nll(x, p), (p0.clone().requires_grad_(),))


@pytest.mark.parametrize("name", ["gamma", "zero_inflated_gamma", "gaussian"])
def test_initial_readout_is_each_channels_own_distribution(name):
    """With the readout bias alone (factors 0), the mean is each channel's mean over the data."""
    rng = np.random.default_rng(3)
    scales = np.array([0.01, 1.0, 50.0, 1000.0])  # any units: EMG in mV or in raw ADC counts
    x = rng.gamma(4.0, 1.0, size=(200, 20, 4)) * scales
    if name == "zero_inflated_gamma":
        x[rng.random(x.shape) < 0.7] = 0.0
    x = torch.as_tensor(x)
    model = build(name, x).double()
    bias = model.init_bias(x).reshape(1, 1, -1)
    mean = model.mean(bias).reshape(-1).numpy()
    np.testing.assert_allclose(mean, x.mean(dim=(0, 1)).numpy(), rtol=0.05)
    enc = model.encoder_input(x)
    assert 0.1 < float(enc.abs().mean(dim=(0, 1)).min()) <= float(
        enc.abs().mean(dim=(0, 1)).max()) < 10  # the encoders see every channel on one scale


def test_zero_inflated_gamma_threshold_sits_under_every_event():
    x = _data("zero_inflated_gamma")
    model = build("zero_inflated_gamma", x)
    smallest = torch.where(x > 0, x, torch.inf).amin(dim=(0, 1))
    assert (model.loc < smallest).all() and (model.loc > 0.9 * smallest).all()
    assert torch.isfinite(model.nll(x, _params(model))).all()


def test_auto_choice_per_modality():
    from autolfads.data.modalities import make_calcium, make_emg
    from autolfads.data.synthetic import make_lorenz

    counts = make_lorenz(n_conditions=4, trials_per_condition=3).spikes
    emg = make_emg(conditions=4, trials_per_condition=3).data
    calcium = make_calcium(conditions=4, trials_per_condition=3).data
    events = np.where(emg > 3.0, emg, 0.0)
    assert choose(counts)[0] == "poisson"
    name, why = choose(emg)
    assert name == "gamma" and "positive" in why and "0 zeros" in why
    assert choose(calcium)[0] == "gaussian"
    name, why = choose(events)
    assert name == "zero_inflated_gamma" and "% exact zeros" in why
    assert resolve("gamma", emg, "x") == ("gamma", "as configured")
    adc = np.round(emg * 1000)  # EMG digitised as whole numbers: poisson, with a hint
    name, why = choose(adc)
    assert name == "poisson" and "model.observation=gamma" in why
    assert "model.observation" not in choose(counts)[1]
    # counts out of a float computation: zeros as -2.7e-17 (0.3 - 0.1 - 0.2) are counts still
    residue = counts + np.where(counts == 0, 0.3 - 0.1 - 0.2, 0.0)
    name, why = choose(residue)
    assert residue.min() < 0 and name == "poisson" and "whole numbers to within 3e-17" in why
    check("poisson", residue, "x")  # and an explicit poisson takes them (rounded later)
    assert choose(counts - 0.5 * (counts == 0))[0] == "gaussian"  # a real negative value


@pytest.mark.parametrize("name,values,words", [
    ("gamma", [[[1.0, -0.5]]], ["negative", "-0.5", "trial 0, bin 0, channel 1", "gaussian"]),
    ("gamma", [[[1.0, 0.0]]], ["exact zeros", "zero_inflated_gamma"]),
    ("poisson", [[[1.0, 2.5]]], ["non-integer", "2.5", "gamma", "gaussian"]),
    ("zero_inflated_gamma", [[[1.0, 0.0]], [[0.3, 0.0]]], ["channel", "0-based: 1"]),
    ("gaussian", [[[1.0, 2.0]], [[3.0, 2.0]]], ["same value in every bin", "0-based: 1"]),
    ("auto", [[[0.0, 0.0]]], ["every value is zero"]),
])
def test_each_model_rejects_data_it_cannot_describe(name, values, words):
    a = np.array(values, dtype=float)
    with pytest.raises(UserInputError) as info:
        check(choose(a)[0] if name == "auto" else name, a, "f.mat")
    msg = str(info.value)
    assert msg.startswith("f.mat: ") and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_poisson_accepts_silent_neurons():
    a = np.zeros((2, 3, 2))
    a[:, :, 0] = 1.0
    check("poisson", a, "x")  # a neuron that never spikes is kept (its rate goes to ~0)
