"""LFADS: Latent Factor Analysis via Dynamical Systems (Pandarinath et al., 2018).

For a trial of spike counts x_{1:T} (T bins x N neurons):

  IC encoder      e = [GRU_fwd(x)_T ; GRU_bwd(x)_1]                 (2*ic_enc_dim)
                  q(z0 | x) = N(mu0, var0),  [mu0, log var0] = W_ic e        z0: ic_dim
  CI encoder      c_t = [GRU_fwd(x)_{t-lag} ; GRU_bwd(x)_{t+lag}]   (2*ci_enc_dim)
  Controller      h^con_t = GRU_con([c_t ; f_{t-1}], h^con_{t-1})
                  q(u_t | x) = N(mu_t, var_t), [mu_t, log var_t] = W_co h^con_t      u_t: co_dim
  Generator       g_0 = W_g0 z0;   g_t = GRU_gen([u_t ; ext_t], g_{t-1})             gen_dim
  Factors         f_t = W_fac g_t  (rows of W_fac unit-norm, dropout on g_t)          fac_dim
  Observations    theta_t = W_out f_t + b_out;  x_t ~ p(x | theta_t)
                  (Poisson: theta = log lambda; gamma, zero-inflated gamma, Gaussian: observations/)

Costs per trial: reconstruction -log p(x | theta) (observations/); KL(q(z0) || p(z0)) with a
Gaussian prior and KL(q(u) || p(u)) with an AR(1) prior (priors.py); L2 on the recurrent weights
of the generator and controller. With co_dim = 0 the controller and CI encoder do not exist and
the generator is driven by its initial state (and external inputs, if any) alone. The GRUs clip
their state to +-cell_clip (layers.py).

Optionally the model reconstructs more bins and neurons than it encodes (`recon_seq_len`,
`n_outputs`, e.g. held-out neurons and a forward-prediction window): the encoders read the
T_enc given bins, the controller sees zero encoder input after them, and the generator runs
recon_seq_len bins.

The code below is the plain form: nn.GRU encoders and one Python step per bin. All random draws
are made up front (noise.py), so that with `fused` on (model.fused, the default) the encoders and
the controller + generator loop run instead as the hand-written recurrences of model/fused/ on
the same parameters and draws; tests/test_fast_path.py checks that both give the same outputs
and gradients. Several CPU cores are used by running shards of the batch in threads
(training/parallel.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from autolfads.config import ModelConfig
from autolfads.model import fused
from autolfads.model.layers import ClippedGRUCell, NormalizedLinear
from autolfads.model.noise import Noise, draw_noise
from autolfads.model.observations import Observation, Poisson
from autolfads.model.priors import AR1Prior, GaussianPrior


@dataclass
class LFADSOutput:
    obs_params: torch.Tensor  # (B, T, P * N) observation parameters (Poisson: log-rates)
    factors: torch.Tensor  # (B, T, fac_dim)
    ic_mean: torch.Tensor  # (B, ic_dim)
    ic_logvar: torch.Tensor  # (B, ic_dim)
    co_mean: torch.Tensor  # (B, T, co_dim)   posterior over inferred inputs
    co_logvar: torch.Tensor  # (B, T, co_dim)
    inferred_inputs: torch.Tensor  # (B, T, co_dim) the u_t the generator received


def _drop(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


class LFADS(nn.Module):
    def __init__(self, cfg: ModelConfig, n_neurons: int, ext_input_dim: int = 0,
                 n_outputs: int | None = None, recon_seq_len: int | None = None,
                 observation: Observation | None = None):
        """n_neurons: encoder input width; n_outputs: channels reconstructed (default n_neurons);
        recon_seq_len: bins the generator runs (default: as many as the input has);
        observation: the observation model (default Poisson; observations.build)."""
        super().__init__()
        self.cfg = cfg
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs or n_neurons
        self.recon_seq_len = recon_seq_len
        self.ext_input_dim = ext_input_dim
        self.use_con = cfg.co_dim > 0
        self.dropout_rate = cfg.dropout_rate  # plain attribute: PBT changes it between epochs
        self.fused = cfg.fused  # plain attribute: tests and the bench switch it

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
        self.obs = observation or Poisson()
        self.readout = nn.Linear(cfg.fac_dim, self.obs.n_params * self.n_outputs)

    # -- helpers -------------------------------------------------------------------------------

    def init_readout_bias(self, train_x: torch.Tensor) -> None:
        """Start each channel's distribution at its own over the training data (trials x time x
        channels): training starts at the null model (Poisson: log of the mean count per bin)."""
        with torch.no_grad():
            self.readout.bias.copy_(self.obs.init_bias(train_x))

    def recurrent_l2(self) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(sum of squared generator U, same for the controller, number of recurrent weights)."""
        gen = self.gen.weight_hh.pow(2).sum()
        if not self.use_con:
            return gen, None, self.gen.weight_hh.numel()
        con = self.con.weight_hh.pow(2).sum()
        return gen, con, self.gen.weight_hh.numel() + self.con.weight_hh.numel()

    def draw_noise(self, data: torch.Tensor, sample: bool = True, map_fn=None) -> Noise:
        """The random draws a forward pass on `data` makes (dropout masks in train mode only);
        map_fn: a parallel map to fill the masks with (noise.draw_noise)."""
        return draw_noise(self, data.shape[0], data.shape[1], data, sample, map_fn)

    # -- the model -----------------------------------------------------------------------------

    def forward(
        self, data: torch.Tensor, ext_input: torch.Tensor | None = None, sample: bool = True,
        noise: Noise | None = None,
    ) -> LFADSOutput:
        """data: (B, T, N) encoder input; ext_input: (B, T_recon, E) or None.

        sample=True draws z0 and u_t from their posteriors (training, posterior sampling);
        sample=False passes the posterior means (deterministic validation). `noise` replaces
        the random draws (tests use it to feed the fused and the plain form the same draws).
        """
        nz = self.draw_noise(data, sample) if noise is None else noise
        return self.generate(self.encode(data, nz), ext_input, nz,
                             self.recon_seq_len or data.shape[1])

    def generate(self, encoded: tuple, ext_input: torch.Tensor | None, nz: Noise, T: int
                 ) -> LFADSOutput:
        """The part of a forward pass after the encoders: z0 ~ q(z0|x), the controller and
        generator over T bins, the readout. encoded: encode()'s output for the same trials (in
        eval mode it does not depend on the draws, so posterior sampling encodes each trial
        once and generates all its samples from it: training/sampling.py). The controller
        inputs may cover B / S of the B trials: row r then reads those of trial r % (B / S), so
        S samples of each trial share one projection of them (inference only)."""
        ic_mean, ic_logvar, ci = encoded
        z0 = ic_mean if nz.z0 is None else ic_mean + torch.exp(0.5 * ic_logvar) * nz.z0  # ~ q(z0|x)
        ext = None if not self.ext_input_dim else ext_input.transpose(0, 1)
        factors, u, co_mean, co_logvar = self.decode(z0, ci, ext, nz, T)
        obs_params = self.readout(factors)  # theta_t = W_out f_t + b_out
        return LFADSOutput(obs_params, factors, ic_mean, ic_logvar, co_mean, co_logvar, u)

    def encode(self, x: torch.Tensor, nz: Noise):
        """x (B, T_enc, N) -> mean and log variance of q(z0 | x), each (B, ic_dim), and the
        controller inputs c_t (T_enc, B, 2 ci_enc_dim) (None without a controller)."""
        B, T_enc, _ = x.shape
        x = _drop(x, nz.data)
        if self.fused:
            h_ic, fwd, bwd = fused.encoders(self, x)
        else:
            _, h_n = self.ic_enc(x, self.ic_enc_h0.expand(-1, B, -1).contiguous())  # (2, B, H)
            h_ic = torch.cat([h_n[0], h_n[1]], dim=-1)
            if self.use_con:
                states, _ = self.ci_enc(x, self.ci_enc_h0.expand(-1, B, -1).contiguous())
                fwd, bwd = states.transpose(0, 1).chunk(2, dim=-1)  # each (T_enc, B, H)
        e = _drop(h_ic, nz.ic_enc)  # e = [GRU_fwd(x)_T ; GRU_bwd(x)_1]
        ic_mean, ic_logvar = self.ic_linear(e).chunk(2, dim=-1)  # [mu0, log var0] = W_ic e
        ic_logvar = torch.log(torch.exp(ic_logvar) + self.cfg.ic_post_var_min)  # var0 >= min
        if not self.use_con:
            return ic_mean, ic_logvar, None
        # c_t = [GRU_fwd(x)_{t-lag} ; GRU_bwd(x)_{t+lag}], zero beyond the ends: the controller
        # at bin t cannot read the very bin it is about to explain.
        lag = min(self.cfg.ci_lag, T_enc)
        pad = fwd.new_zeros(lag, B, fwd.shape[-1])
        ci = torch.cat([torch.cat([pad, fwd[: T_enc - lag]]), torch.cat([bwd[lag:], pad])], -1)
        return ic_mean, ic_logvar, _drop(ci, nz.ci)

    def decode(self, z0: torch.Tensor, ci: torch.Tensor | None, ext: torch.Tensor | None,
               nz: Noise, T: int):
        """T bins from z0 (B, ic_dim), c_t (T_enc, B, D) and ext_t (T, B, E) (or None) ->
        factors (B, T, fac_dim), inferred inputs u_t and the mean and log variance of
        q(u_t | x), each (B, T, co_dim)."""
        K = self.cfg.co_dim
        g = self.ic_to_g0(z0)  # g_0 = W_g0 z0
        if ci is not None and ci.shape[0] < T:  # no encoder input past the encoded bins
            ci = torch.cat([ci, ci.new_zeros(T - ci.shape[0], *ci.shape[1:])])
        if self.fused:
            return fused.decode(self, g, ci, ext, nz, T)

        B = g.shape[0]
        w_fac = self.fac.normalized_weight()
        g_masks = [None] * (T + 1) if nz.gen is None else nz.gen.unbind(0)
        # The input gates of the inputs known in advance, all bins at once: b (+ W_ext ext_t).
        gen_xg = self.gen.bias_ih.expand(T, B, -1)
        if ext is not None:
            gen_xg = gen_xg + self.gen.input_gates(ext, slice(K, K + self.ext_input_dim))
        gen_xg = gen_xg.unbind(0)
        if self.use_con:
            D = ci.shape[-1]
            if B % ci.shape[1]:
                raise ValueError(f"controller inputs for {ci.shape[1]} trials cannot serve "
                                 f"{B} rows: B must be a multiple")
            con_xg = self.con.input_gates(ci, slice(0, D)) + self.con.bias_ih
            con_xg = con_xg.repeat(1, B // ci.shape[1], 1).unbind(0)  # shared by S samples
            w_con_f, w_gen_u = self.con.weight_ih[:, D:], self.gen.weight_ih[:, :K]
            f_masks = [None] * T if nz.fac is None else nz.fac.unbind(0)
            h = self.con_h0.expand(B, -1)
            f = _drop(g, g_masks[0]) @ w_fac.t()  # f_{-1} = W_fac g_0

        factors, us, co_means, co_logvars = [], [], [], []
        for t in range(T):
            xg = gen_xg[t]
            if self.use_con:
                # h^con_t = GRU_con([c_t ; f_{t-1}], h^con_{t-1})
                h = self.con.step(con_xg[t] + _drop(f, f_masks[t]) @ w_con_f.t(), h)
                mean, logvar = self.co_linear(h).chunk(2, dim=-1)  # [mu_t, log var_t] = W_co h
                u = mean if nz.u is None else mean + torch.exp(0.5 * logvar) * nz.u[t]  # ~ q(u_t)
                xg = xg + u @ w_gen_u.t()
                us.append(u)
                co_means.append(mean)
                co_logvars.append(logvar)
            g = self.gen.step(xg, g)  # g_t = GRU_gen([u_t ; ext_t], g_{t-1})
            f = _drop(g, g_masks[t + 1]) @ w_fac.t()  # f_t = W_fac g_t
            factors.append(f)

        fac = torch.stack(factors, dim=1)
        if not self.use_con:
            none = fac.new_zeros(B, T, 0)
            return fac, none, none, none
        return fac, *(torch.stack(a, dim=1) for a in (us, co_means, co_logvars))
