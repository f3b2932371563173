"""LFADS equations: shapes, priors, GRU cell, coordinated dropout, readout normalisation."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from autolfads.config import ModelConfig
from autolfads.model import LFADS
from autolfads.model.augment import coordinated_dropout, gradient_only_through
from autolfads.model.layers import ClippedGRUCell, NormalizedLinear
from autolfads.model.objective import LossWeights, compute_costs, total_loss
from autolfads.model.observations import poisson_nll
from autolfads.model.priors import AR1Prior, GaussianPrior

SMALL = dict(ic_enc_dim=8, ci_enc_dim=8, con_dim=8, ic_dim=6, gen_dim=10, fac_dim=5)


def counts(b=7, t=12, n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.rand(b, t, n, generator=g) * 2, generator=g)


@pytest.mark.parametrize("co_dim,ext", [(3, 0), (0, 0), (2, 4), (0, 3)])
def test_forward_shapes(co_dim, ext):
    torch.manual_seed(0)
    m = LFADS(ModelConfig(co_dim=co_dim, **SMALL), n_neurons=9, ext_input_dim=ext)
    x = counts()
    e = torch.randn(7, 12, ext) if ext else None
    out = m(x, e)
    assert out.obs_params.shape == (7, 12, 9)
    assert out.factors.shape == (7, 12, 5)
    assert out.ic_mean.shape == (7, 6)
    assert out.inferred_inputs.shape == (7, 12, co_dim)
    assert torch.isfinite(out.obs_params).all()
    c = compute_costs(m, out, x, LossWeights(1e-3, 1e-3, 1e-3, 1e-3))
    total_loss(c, LossWeights(1e-3, 1e-3, 1e-3, 1e-3)).backward()
    assert all(p.grad is not None for n, p in m.named_parameters()
               if p.numel() and not n.startswith("ic_prior"))


def test_eval_without_sampling_is_deterministic():
    torch.manual_seed(0)
    m = LFADS(ModelConfig(dropout_rate=0.3, **SMALL), n_neurons=9).eval()
    x = counts()
    a, b = m(x, sample=False), m(x, sample=False)
    assert torch.equal(a.obs_params, b.obs_params)
    c = m(x, sample=True)
    assert not torch.equal(a.obs_params, c.obs_params)


def test_gru_cell_matches_torch_gru_cell_and_clips():
    torch.manual_seed(0)
    cell = ClippedGRUCell(5, 7, clip=0.3)
    ref = torch.nn.GRUCell(5, 7)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, name).copy_(getattr(cell, name))
    x, h = torch.randn(4, 5), torch.randn(4, 7) * 0.1
    new = cell.step(cell.input_gates(x), h)
    assert torch.allclose(new, ref(x, h).clamp(-0.3, 0.3), atol=1e-6)
    assert new.abs().max() <= 0.3 + 1e-7


def test_factor_readout_rows_have_unit_norm():
    lin = NormalizedLinear(10, 4)
    with torch.no_grad():
        lin.weight.mul_(17.0)
    assert torch.allclose(lin.normalized_weight().norm(dim=1), torch.ones(4), atol=1e-6)


def test_gaussian_kl_matches_torch_distributions():
    prior = GaussianPrior(3, variance=0.1)
    with torch.no_grad():
        prior.mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
    mean, logvar = torch.randn(5, 3), torch.randn(5, 3)
    ref = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)),
                        Normal(prior.mean, math.sqrt(0.1))).sum(-1)
    assert torch.allclose(prior.kl(mean, logvar), ref, atol=1e-5)


def test_ar1_log_prob_matches_full_gaussian():
    """The AR(1) factorisation equals the joint Gaussian with covariance pvar * a^|i-j|."""
    tau, nvar, T = 4.0, 0.2, 6
    prior = AR1Prior(1, tau, nvar)
    u = torch.randn(3, T, 1)
    a = math.exp(-1 / tau)
    pvar = nvar / (1 - a * a)
    idx = torch.arange(T)
    cov = pvar * a ** (idx[:, None] - idx[None, :]).abs().double()
    mvn = torch.distributions.MultivariateNormal(torch.zeros(T, dtype=torch.float64), cov)
    assert torch.allclose(prior.log_prob(u).double(), mvn.log_prob(u[..., 0].double()), atol=1e-4)


def test_poisson_nll_is_normalised():
    rate = torch.tensor(2.5)
    ks = torch.arange(0, 60, dtype=torch.float32)
    total = torch.exp(-poisson_nll(ks, torch.log(rate).expand_as(ks))).sum()
    assert abs(float(total) - 1.0) < 1e-5


def test_coordinated_dropout_gradient_only_through_dropped_entries():
    torch.manual_seed(1)
    x = counts()
    x_in, mask = coordinated_dropout(x, 0.4)
    assert mask is not None and 0.3 < float(mask.mean()) < 0.5
    # Kept entries are rescaled, dropped ones are zero.
    assert torch.all(x_in[mask.bool()] == 0)
    assert torch.allclose(x_in[~mask.bool()], x[~mask.bool()] / 0.6)
    lr = torch.zeros_like(x, requires_grad=True)
    cost = gradient_only_through(poisson_nll(x, lr), mask)
    assert torch.allclose(cost, poisson_nll(x, lr))  # value unchanged
    cost.sum().backward()
    assert torch.all(lr.grad[~mask.bool()] == 0)
    assert torch.any(lr.grad[mask.bool()] != 0)


def test_fused_poisson_cost_equals_plain_composition():
    """observations.poisson_cost (value and gradient formed in one pass) against the plain
    autograd composition of poisson_nll and gradient_only_through, with and without weights."""
    from autolfads.model.observations import log_factorial, poisson_cost

    g = torch.Generator().manual_seed(3)
    x = torch.poisson(torch.rand(4, 7, 5, generator=g, dtype=torch.float64) * 3)
    lr0 = torch.randn(4, 7, 5, generator=g, dtype=torch.float64)
    mask = (torch.rand(4, 7, 5, generator=g) < 0.4).double()
    weight = torch.rand(4, 7, 5, generator=g, dtype=torch.float64)
    for w, m, lf in [(None, None, None), (None, mask, log_factorial(x)), (weight, mask, None)]:
        lr_a = lr0.clone().requires_grad_()
        cost, nll = poisson_cost(x, lr_a, w, m, lf)
        cost.backward()
        lr_b = lr0.clone().requires_grad_()
        plain = gradient_only_through(poisson_nll(x, lr_b), m)
        ref = plain.mean() if w is None else (plain * w).sum()
        ref.backward()
        assert torch.allclose(cost, ref, rtol=1e-12)
        assert torch.allclose(nll, poisson_nll(x, lr0), rtol=1e-12)
        assert torch.allclose(lr_a.grad, lr_b.grad, rtol=1e-12, atol=1e-15)
        assert not nll.requires_grad


def test_sample_validation_entries_do_not_train():
    torch.manual_seed(0)
    m = LFADS(ModelConfig(**SMALL), n_neurons=9)
    x = counts()
    held = torch.zeros_like(x, dtype=torch.bool)
    held[:, :, 0] = True  # neuron 0 held out everywhere
    out = m(x)
    c = compute_costs(m, out, x, LossWeights(0, 0, 0, 0), None, held)
    grad = torch.autograd.grad(c.recon, out.obs_params)[0]
    assert torch.all(grad[:, :, 0] == 0) and torch.any(grad[:, :, 1:] != 0)
    assert c.sv_recon is not None and float(c.sv_recon) > 0
