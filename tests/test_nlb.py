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
