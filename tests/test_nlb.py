"""NLB metrics against nlb_tools' own evaluation functions on a fixture (to 1e-6)."""

import numpy as np
import pytest

from autolfads.analysis import nlb

evaluation = pytest.importorskip("nlb_tools.evaluation")


@pytest.fixture()
def fixture():
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 0.3, size=(24, 30, 10))  # trials x (25 observed + 5 forward) x neurons
    spikes = rng.poisson(rates * rng.uniform(0.7, 1.3, size=rates.shape)).astype(float)
    return rates, spikes


def test_co_bps_and_fp_bps_equal_nlb_tools(fixture):
    rates, spikes = fixture
    heldout = np.array([1, 4, 7])
    want_co = evaluation.bits_per_spike(rates[:, :25, heldout], spikes[:, :25, heldout])
    want_fp = evaluation.bits_per_spike(rates[:, 25:], spikes[:, 25:])
    assert nlb.co_bps(rates, spikes, heldout, 25) == pytest.approx(want_co, abs=1e-6)
    assert nlb.fp_bps(rates, spikes, 25) == pytest.approx(want_fp, abs=1e-6)
    assert want_co > 0 and want_fp > 0


def test_psth_and_velocity_r2_equal_nlb_tools(fixture):
    rates, spikes = fixture
    cond = np.arange(24) % 4
    cond_idx = [np.flatnonzero(cond == c) for c in range(4)]
    psth = np.stack([rates[idx].mean(0) for idx in cond_idx]) + 0.05
    want = evaluation.eval_psth(psth, rates, cond_idx)
    assert nlb.psth_r2(psth, rates, cond_idx) == pytest.approx(want, abs=1e-6)
    rng = np.random.default_rng(1)
    beh = rates.reshape(-1, 10) @ rng.normal(size=(10, 2)) + rng.normal(size=(720, 2))
    x = spikes.reshape(-1, 10)
    want = evaluation.fit_and_eval_decoder(x[:480], beh[:480], x[480:], beh[480:])
    assert nlb.velocity_r2(x[:480], beh[:480], x[480:], beh[480:]) == pytest.approx(want,
                                                                                    abs=1e-6)


def test_velocity_r2_on_collinear_rates_says_nothing_to_the_console():
    """Rates driven by a few latents are nearly collinear: the alpha grid's smallest penalties
    solve ill-conditioned systems, which scipy warns of; the score is still the best alpha's."""
    import warnings

    rng = np.random.default_rng(2)
    latents = rng.normal(size=(600, 2))
    rates = np.exp(latents @ rng.normal(size=(2, 30)) * 0.3)
    rates[:, 1] = rates[:, 0] * 2.0  # one neuron a multiple of another
    rates = (rates * 20).astype(np.float32)  # as the outputs hold them
    beh = (latents + 0.1 * rng.normal(size=latents.shape)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r2 = nlb.velocity_r2(rates[:400], beh[:400], rates[400:], beh[400:])
    assert r2 > 0.8


def test_heldout_neurons_and_forward_bins_are_never_encoded_but_reconstructed():
    import torch
    from conftest import tiny_config

    from autolfads.config import DataConfig
    from autolfads.data.io import from_array
    from autolfads.results import compute_metrics
    from autolfads.training.loop import Trainer
    from autolfads.training.sampling import posterior_outputs

    rng = np.random.default_rng(0)
    rates = np.exp(np.sin(np.linspace(0, 6, 20))[None, :, None] * rng.uniform(0.5, 1.5, 8))
    spikes = rng.poisson(np.broadcast_to(rates, (120, 20, 8))).astype(np.float32)
    cfg = DataConfig(heldout_neurons=[2, 5], forward_bins=4)
    ds = from_array(spikes, truth=np.broadcast_to(rates, spikes.shape).copy(), cfg=cfg,
                    conditions=np.arange(120) % 3)
    assert list(ds.heldin_neurons) == [0, 1, 3, 4, 6, 7] and ds.n_observed_bins == 16
    tr = Trainer(tiny_config(), ds)
    seen = ds.train_data[:, :16][:, :, ds.heldin_neurons]
    np.testing.assert_array_equal(tr.train_in.numpy(), seen)
    assert tr.model.n_neurons == 6 and tr.model.n_outputs == 8
    cd = torch.zeros(4, 16, 6)
    full = tr.full_grad_mask(cd, torch.zeros(4, 20, 8))
    assert full[:, :16, [2, 5]].eq(1).all() and full[:, 16:].eq(1).all()  # never seen: trained
    assert full[:, :16, [0, 1, 3]].eq(0).all()
    tr.fit(2, early_stop=False)
    post = posterior_outputs(tr, n_samples=2)
    assert post["test_rates"].shape == (len(ds.test_inds), 20, 8)
    m = compute_metrics(ds, post)
    assert {"co_bps", "co_bps_smoothing", "fp_bps", "psth_r2"} <= set(m)
    assert all(np.isfinite(m[k]) for k in ("co_bps", "fp_bps", "psth_r2"))
