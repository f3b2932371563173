"""LFADS: Latent Factor Analysis via Dynamical Systems (Pandarinath et al., 2018).

For a trial of spike counts x_{1:T} (T bins x N neurons):

  IC encoder      e = [GRU_fwd(x)_T ; GRU_bwd(x)_1]                 (2*ic_enc_dim)
                  q(z0 | x) = N(mu0, var0),  [mu0, log var0] = W_ic e        z0: ic_dim
  CI encoder      c_t = [GRU_fwd(x)_{t-lag} ; GRU_bwd(x)_{t+lag}]   (2*ci_enc_dim)
  Controller      h^con_t = GRU_con([c_t ; f_{t-1}], h^con_{t-1})
                  q(u_t | x) = N(mu_t, var_t), [mu_t, log var_t] = W_co h^con_t      u_t: co_dim
  Generator       g_0 = W_g0 z0;   g_t = GRU_gen([u_t ; ext_t], g_{t-1})             gen_dim
  Factors         f_t = W_fac g_t  (rows of W_fac unit-norm, dropout on g_t)          fac_dim
  Observations    log lambda_t = W_out f_t + b_out;  x_t ~ Poisson(lambda_t)

Costs per trial: reconstruction -log p(x | lambda) (observations.py); KL(q(z0) || p(z0)) with a
Gaussian prior and KL(q(u) || p(u)) with an AR(1) prior (priors.py); L2 on the recurrent weights
of the generator and controller. With co_dim = 0 the controller and CI encoder do not exist and
the generator is driven by its initial state (and external inputs, if any) alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from autolfads.config import ModelConfig
from autolfads.model.layers import ClippedGRUCell, NormalizedLinear, dropout_masks
from autolfads.model.priors import AR1Prior, GaussianPrior


@dataclass
class LFADSOutput:
    log_rates: torch.Tensor  # (B, T, N)
    factors: torch.Tensor  # (B, T, fac_dim)
    ic_mean: torch.Tensor  # (B, ic_dim)
    ic_logvar: torch.Tensor  # (B, ic_dim)
    co_mean: torch.Tensor  # (B, T, co_dim)   posterior over inferred inputs
    co_logvar: torch.Tensor  # (B, T, co_dim)
    inferred_inputs: torch.Tensor  # (B, T, co_dim) the u_t the generator received


class LFADS(nn.Module):
    def __init__(self, cfg: ModelConfig, n_neurons: int, ext_input_dim: int = 0):
        super().__init__()
        self.cfg = cfg
        self.n_neurons = n_neurons
        self.ext_input_dim = ext_input_dim
        self.use_con = cfg.co_dim > 0
        self.dropout_rate = cfg.dropout_rate  # plain attribute: PBT changes it between epochs

        self.ic_enc = nn.GRU(n_neurons, cfg.ic_enc_dim, batch_first=True, bidirectional=True)
        self.ic_enc_h0 = nn.Parameter(torch.zeros(2, 1, cfg.ic_enc_dim))
        self.ic_linear = nn.Linear(2 * cfg.ic_enc_dim, 2 * cfg.ic_dim)
        self.ic_prior = GaussianPrior(cfg.ic_dim, cfg.ic_prior_var)
        self.ic_to_g0 = nn.Linear(cfg.ic_dim, cfg.gen_dim)

        if self.use_con:
            self.ci_enc = nn.GRU(n_neurons, cfg.ci_enc_dim, batch_first=True, bidirectional=True)
            self.ci_enc_h0 = nn.Parameter(torch.zeros(2, 1, cfg.ci_enc_dim))
            # Controller input columns: [c_t (2*ci_enc_dim) ; f_{t-1} (fac_dim)].
            self.con = ClippedGRUCell(2 * cfg.ci_enc_dim + cfg.fac_dim, cfg.con_dim, cfg.cell_clip)
            self.con_h0 = nn.Parameter(torch.zeros(1, cfg.con_dim))
            self.co_linear = nn.Linear(cfg.con_dim, 2 * cfg.co_dim)
            self.co_prior = AR1Prior(cfg.co_dim, cfg.co_prior_tau, cfg.co_prior_nvar)

        # Generator input columns: [u_t (co_dim) ; ext_t (ext_input_dim)]; may be empty.
        self.gen = ClippedGRUCell(cfg.co_dim + ext_input_dim, cfg.gen_dim, cfg.cell_clip)
        self.fac = NormalizedLinear(cfg.gen_dim, cfg.fac_dim)
        self.readout = nn.Linear(cfg.fac_dim, n_neurons)

    # -- helpers -------------------------------------------------------------------------------

    def init_readout_bias(self, mean_counts: torch.Tensor) -> None:
        """Start each neuron's log-rate at its mean count per bin, so training starts near the null."""
        with torch.no_grad():
            self.readout.bias.copy_(torch.log(mean_counts.clamp_min(1e-3)))

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        mask = dropout_masks(x.shape, self.dropout_rate, x) if self.training else None
        return x if mask is None else x * mask

    def recurrent_l2(self) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(sum of squared generator U, same for the controller, number of recurrent weights)."""
        gen = self.gen.weight_hh.pow(2).sum()
        if not self.use_con:
            return gen, None, self.gen.weight_hh.numel()
        con = self.con.weight_hh.pow(2).sum()
        return gen, con, self.gen.weight_hh.numel() + self.con.weight_hh.numel()

    # -- forward -------------------------------------------------------------------------------

    def forward(
        self, data: torch.Tensor, ext_input: torch.Tensor | None = None, sample: bool = True
    ) -> LFADSOutput:
        """data: (B, T, N) encoder input; ext_input: (B, T, E) or None.

        sample=True draws z0 and u_t from their posteriors (training, posterior sampling);
        sample=False passes the posterior means (deterministic validation).
        """
        cfg = self.cfg
        B, T, _ = data.shape
        x = self._drop(data)

        # IC encoder -> q(z0 | x)
        _, h_n = self.ic_enc(x, self.ic_enc_h0.expand(-1, B, -1).contiguous())  # (2, B, H)
        e = self._drop(torch.cat([h_n[0], h_n[1]], dim=-1))  # (B, 2H)
        ic_mean, ic_logvar = self.ic_linear(e).chunk(2, dim=-1)  # (B, ic_dim) each
        ic_logvar = torch.log(torch.exp(ic_logvar) + cfg.ic_post_var_min)
        z0 = ic_mean + torch.exp(0.5 * ic_logvar) * torch.randn_like(ic_mean) if sample else ic_mean

        g = self.ic_to_g0(z0)  # (B, gen_dim)
        w_fac = self.fac.normalized_weight()  # (fac_dim, gen_dim)
        gen_masks = None
        if self.training and self.dropout_rate > 0:
            gen_masks = dropout_masks((T + 1, B, cfg.gen_dim), self.dropout_rate, g).unbind(0)

        def factors_of(g: torch.Tensor, t: int) -> torch.Tensor:
            return (g if gen_masks is None else g * gen_masks[t]) @ w_fac.t()

        f = factors_of(g, 0)  # f_{-1}: the controller's first view of the factors

        # Inputs of known value for all bins are projected once, outside the time loop.
        gen_xg = self.gen.bias_ih.expand(T, B, -1)
        if self.ext_input_dim:
            ext_cols = slice(cfg.co_dim, cfg.co_dim + self.ext_input_dim)
            gen_xg = gen_xg + self.gen.input_gates(ext_input.transpose(0, 1), ext_cols)
        # unbind() once: indexing [t] inside the loop would make autograd write a full-size
        # zero gradient per step (quadratic in T).
        gen_xg = gen_xg.unbind(0)
        if self.use_con:
            con_xg, con_h, w_con_f, w_gen_u, eps = self._controller_setup(x, B, T)

        factors, us, co_means, co_logvars = [], [], [], []
        for t in range(T):
            xg = gen_xg[t]
            if self.use_con:
                con_h = self.con.step(con_xg[t] + self._drop(f) @ w_con_f.t(), con_h)
                co_mean, co_logvar = self.co_linear(con_h).chunk(2, dim=-1)  # (B, co_dim)
                u = co_mean + torch.exp(0.5 * co_logvar) * eps[t] if sample else co_mean
                xg = xg + u @ w_gen_u.t()
                us.append(u)
                co_means.append(co_mean)
                co_logvars.append(co_logvar)
            g = self.gen.step(xg, g)
            f = factors_of(g, t + 1)
            factors.append(f)

        fac = torch.stack(factors, dim=1)  # (B, T, fac_dim)
        log_rates = self.readout(fac)  # (B, T, N)
        if self.use_con:
            u_all = torch.stack(us, dim=1)
            co_mean_all, co_logvar_all = torch.stack(co_means, 1), torch.stack(co_logvars, 1)
        else:
            u_all = co_mean_all = co_logvar_all = fac.new_zeros(B, T, 0)
        return LFADSOutput(log_rates, fac, ic_mean, ic_logvar, co_mean_all, co_logvar_all, u_all)

    def _controller_setup(self, x: torch.Tensor, B: int, T: int):
        """Encode controller inputs for all bins and project them into the controller's gates."""
        cfg = self.cfg
        H = cfg.ci_enc_dim
        ci, _ = self.ci_enc(x, self.ci_enc_h0.expand(-1, B, -1).contiguous())  # (B, T, 2H)
        fwd, bwd = ci[..., :H], ci[..., H:]
        lag = cfg.ci_lag
        if lag:
            # The controller at bin t sees the forward encoder up to t-lag and the backward one
            # from t+lag on, so it cannot read the very bin it is about to explain.
            fwd = torch.cat([fwd.new_zeros(B, lag, H), fwd[:, :-lag]], dim=1)
            bwd = torch.cat([bwd[:, lag:], bwd.new_zeros(B, lag, H)], dim=1)
        ci = self._drop(torch.cat([fwd, bwd], dim=-1)).transpose(0, 1)  # (T, B, 2H)
        con_xg = self.con.input_gates(ci, slice(0, 2 * H)) + self.con.bias_ih  # (T, B, 3*con)
        w_con_f = self.con.weight_ih[:, 2 * H :]  # (3*con, fac_dim)
        w_gen_u = self.gen.weight_ih[:, : cfg.co_dim]  # (3*gen, co_dim)
        eps = torch.randn(T, B, cfg.co_dim, dtype=x.dtype, device=x.device).unbind(0)
        con_h = self.con_h0.expand(B, -1)
        return con_xg.unbind(0), con_h, w_con_f, w_gen_u, eps
