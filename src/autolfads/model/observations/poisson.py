"""Poisson observations, for spike counts: one readout parameter per neuron, the log-rate.

    log lambda_t = W_out f_t + b_out          (rates in expected counts per bin)
    -log p(x | lambda) = lambda - x log lambda + log Gamma(x + 1)
    mean = lambda
"""

from __future__ import annotations

import torch

from autolfads.model.observations.base import Observation


def poisson_nll(counts: torch.Tensor, obs_params: torch.Tensor) -> torch.Tensor:
    """Elementwise negative log-likelihood, same shape as the inputs."""
    return torch.exp(obs_params) - counts * obs_params + log_factorial(counts)


class _PoissonCost(torch.autograd.Function):
    """The reconstruction cost with its gradient formed in the same pass (see poisson_cost)."""

    @staticmethod
    def forward(ctx, obs_params, counts, weight, grad_mask, log_fact):
        rates = obs_params.detach().exp()
        nll = torch.addcmul(rates, counts, obs_params.detach(), value=-1.0)
        nll += log_factorial(counts) if log_fact is None else log_fact
        cost = nll.mean() if weight is None else torch.dot(nll.flatten(), weight.flatten())
        if ctx.needs_input_grad[0]:
            # d nll / d log lambda = lambda - x; only where the mask lets the gradient through.
            grad = rates.sub_(counts)
            if grad_mask is not None:
                grad.mul_(grad_mask)
            grad = grad.mul_(1.0 / nll.numel()) if weight is None else grad.mul_(weight)
            ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(nll)
        return cost, nll

    @staticmethod
    def backward(ctx, d_cost, _d_nll):
        (grad,) = ctx.saved_tensors
        return grad * d_cost, None, None, None, None


def log_factorial(counts: torch.Tensor) -> torch.Tensor:
    """log x! = log Gamma(x + 1), the cost's term that depends on the counts alone. torch's CPU
    lgamma is not vectorised (~10 ns per entry, more than the rest of the cost): the Trainer
    computes it once per dataset split and passes it on."""
    return torch.lgamma(counts + 1.0)


def poisson_cost(counts: torch.Tensor, obs_params: torch.Tensor,
                 weight: torch.Tensor | None = None, grad_mask: torch.Tensor | None = None,
                 log_fact: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cost, nll): cost = sum of weight * nll over the entries (weight None: the mean), and the
    elementwise nll (detached). The cost's gradient flows only where grad_mask is 1 (coordinated
    dropout), i.e. it is (weight * augment.gradient_only_through(poisson_nll(counts, obs_params),
    grad_mask)).sum(), in a few passes over the (trials x bins x neurons) entries instead of the
    dozen that composition takes under autograd. log_fact: log_factorial(counts), if known.
    All tensors of one shape."""
    return _PoissonCost.apply(obs_params, counts, weight, grad_mask, log_fact)


class Poisson(Observation):
    name = "poisson"
    n_params = 1

    def nll(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return poisson_nll(x, params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.exp(params)

    def init_bias(self, x: torch.Tensor) -> torch.Tensor:
        """Each neuron's log-rate starts at its mean count per bin: training starts at the null."""
        return torch.log(x.mean(dim=(0, 1)).clamp_min(1e-3))

    def data_term(self, x: torch.Tensor) -> torch.Tensor:
        return log_factorial(x)

    def cost(self, x, params, weight=None, grad_mask=None, data_term=None):
        # The fused form (value and gradient in one pass; checked against the plain one in tests).
        return poisson_cost(x, params, weight, grad_mask, data_term)
