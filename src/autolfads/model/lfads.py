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

Optionally the model reconstructs more bins and neurons than it encodes (`recon_seq_len`,
`n_outputs`, e.g. held-out neurons and a forward-prediction window): the encoders read the
T_enc given bins, the controller sees zero encoder input after them, and the generator runs
recon_seq_len bins.

How it is computed (the equations above are the contract; reference.py computes them plainly):
all random draws are made up front (noise.py); the four encoder GRUs run as one batched
recurrence and the controller + generator loop as one autograd.Function, both with
hand-written backward passes (gru.py, recurrence.py) whose time loops are compiled with
TorchScript where available (loops.py). tests/test_fast_path.py checks outputs and gradients
against reference.py in float64. Several CPU cores are used by running shards of the batch in
threads (training/parallel.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from autolfads.config import ModelConfig
from autolfads.model.gru import bidirectional
from autolfads.model.layers import ClippedGRUCell, NormalizedLinear
from autolfads.model.noise import Noise, draw_noise
from autolfads.model.priors import AR1Prior, GaussianPrior
from autolfads.model.recurrence import Decoder


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
    def __init__(self, cfg: ModelConfig, n_neurons: int, ext_input_dim: int = 0,
                 n_outputs: int | None = None, recon_seq_len: int | None = None):
        """n_neurons: encoder input width; n_outputs: readout width (default n_neurons);
        recon_seq_len: bins the generator runs (default: as many as the input has)."""
        super().__init__()
        self.cfg = cfg
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs or n_neurons
        self.recon_seq_len = recon_seq_len
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
        self.readout = nn.Linear(cfg.fac_dim, self.n_outputs)

    # -- helpers -------------------------------------------------------------------------------

    def init_readout_bias(self, mean_counts: torch.Tensor) -> None:
        """Start each neuron's log-rate at its mean count per bin: training starts at the null."""
        with torch.no_grad():
            self.readout.bias.copy_(torch.log(mean_counts.clamp_min(1e-3)))

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

    # -- forward -------------------------------------------------------------------------------

    def forward(
        self, data: torch.Tensor, ext_input: torch.Tensor | None = None, sample: bool = True,
        noise: Noise | None = None,
    ) -> LFADSOutput:
        """data: (B, T, N) encoder input; ext_input: (B, T_recon, E) or None.

        sample=True draws z0 and u_t from their posteriors (training, posterior sampling);
        sample=False passes the posterior means (deterministic validation). `noise` replaces
        the random draws (tests use it to feed two implementations the same draws).
        """
        cfg = self.cfg
        B, T_enc, _ = data.shape
        T = self.recon_seq_len or T_enc
        nz = self.draw_noise(data, sample) if noise is None else noise
        x = data if nz.data is None else data * nz.data

        encoders = [self.ic_enc] + ([self.ci_enc] if self.use_con else [])
        h0s = [self.ic_enc_h0] + ([self.ci_enc_h0] if self.use_con else [])
        if len({e.hidden_size for e in encoders}) == 1:
            states = bidirectional(encoders, h0s, x)
        else:
            states = [s for e, h in zip(encoders, h0s, strict=True)
                      for s in bidirectional([e], [h], x)]

        # IC encoder -> q(z0 | x)
        e = torch.cat(states[0][2:], dim=-1)  # final states of both directions, (B, 2H)
        if nz.ic_enc is not None:
            e = e * nz.ic_enc
        ic_mean, ic_logvar = self.ic_linear(e).chunk(2, dim=-1)
        ic_logvar = torch.log(torch.exp(ic_logvar) + cfg.ic_post_var_min)
        z0 = ic_mean if nz.z0 is None else ic_mean + torch.exp(0.5 * ic_logvar) * nz.z0
        g0 = self.ic_to_g0(z0)

        con, gen = (self.con if self.use_con else None), self.gen
        ci = self._controller_inputs(*states[1][:2], T, nz) if self.use_con else None
        ext = None if not self.ext_input_dim else ext_input.transpose(0, 1)
        fac, u, co = Decoder.apply(
            ci, ext, g0,
            self.con_h0.expand(B, -1) if con else None,
            *((con.weight_ih, con.bias_ih, con.weight_hh, con.bias_hh, self.co_linear.weight,
               self.co_linear.bias) if con else (None,) * 6),
            gen.weight_ih, gen.bias_ih, gen.weight_hh, gen.bias_hh,
            self.fac.normalized_weight(), nz.fac, nz.gen, nz.u, cfg.cell_clip, T,
        )
        K = cfg.co_dim
        bt = lambda a: a.transpose(0, 1)  # noqa: E731  (time-major inside, batch-major outside)
        # Rates in the counts' own (B, T, N) layout: the cost's elementwise passes over them
        # run at full speed only when both are laid out alike (copying fac is the cheaper copy).
        fac = bt(fac).contiguous()
        return LFADSOutput(self.readout(fac), fac, ic_mean, ic_logvar, bt(co[..., :K]),
                           bt(co[..., K:]), bt(u))

    def _controller_inputs(self, fwd: torch.Tensor, rev: torch.Tensor, T: int, nz: Noise):
        """c_t (T, B, 2H) from the CI encoder states (fwd in time order, rev in reversed order)."""
        T_enc, B, H = fwd.shape
        lag = min(self.cfg.ci_lag, T_enc)
        # The controller at bin t sees the forward encoder up to t-lag and the backward one from
        # t+lag on, so it cannot read the very bin it is about to explain.
        pad = fwd.new_zeros(lag, B, H)
        fwd = torch.cat([pad, fwd[: T_enc - lag]])
        bwd = torch.cat([rev[: T_enc - lag].flip(0), pad])
        ci = torch.cat([fwd, bwd], dim=-1)
        if nz.ci is not None:
            ci = ci * nz.ci
        if T_enc < T:
            ci = torch.cat([ci, ci.new_zeros(T - T_enc, B, 2 * H)])
        return ci
