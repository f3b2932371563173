"""A plain implementation of the LFADS forward pass: per-step GRU cells under autograd.

This is the model as first written (the equations of lfads.py, nn.GRU encoders, one Python step
per bin with ClippedGRUCell), taking its random draws from a Noise so that it can be compared
exactly with the fast path (tests/test_fast_path.py) and timed as the baseline (bench/).
It shares the parameters of the LFADS module it is given; it adds none of its own.
"""

from __future__ import annotations

import torch

from autolfads.model.lfads import LFADS, LFADSOutput
from autolfads.model.noise import Noise


def _drop(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def reference_forward(model: LFADS, data: torch.Tensor, ext_input: torch.Tensor | None = None,
                      sample: bool = True, noise: Noise | None = None) -> LFADSOutput:
    cfg = model.cfg
    B, T_enc, _ = data.shape
    T = model.recon_seq_len or T_enc
    nz = model.draw_noise(data, sample) if noise is None else noise
    x = _drop(data, nz.data)

    _, h_n = model.ic_enc(x, model.ic_enc_h0.expand(-1, B, -1).contiguous())  # (2, B, H)
    e = _drop(torch.cat([h_n[0], h_n[1]], dim=-1), nz.ic_enc)
    ic_mean, ic_logvar = model.ic_linear(e).chunk(2, dim=-1)
    ic_logvar = torch.log(torch.exp(ic_logvar) + cfg.ic_post_var_min)
    z0 = ic_mean if nz.z0 is None else ic_mean + torch.exp(0.5 * ic_logvar) * nz.z0
    g = model.ic_to_g0(z0)

    w_fac = model.fac.normalized_weight()
    gen_masks = None if nz.gen is None else nz.gen.unbind(0)

    def factors_of(g: torch.Tensor, t: int) -> torch.Tensor:
        return (g if gen_masks is None else g * gen_masks[t]) @ w_fac.t()

    f = factors_of(g, 0)
    K = cfg.co_dim
    gen_xg = model.gen.bias_ih.expand(T, B, -1)
    if model.ext_input_dim:
        gen_xg = gen_xg + model.gen.input_gates(ext_input.transpose(0, 1),
                                                slice(K, K + model.ext_input_dim))
    gen_xg = gen_xg.unbind(0)
    if model.use_con:
        H = cfg.ci_enc_dim
        ci, _ = model.ci_enc(x, model.ci_enc_h0.expand(-1, B, -1).contiguous())  # (B, T, 2H)
        fwd, bwd = ci[..., :H], ci[..., H:]
        lag = min(cfg.ci_lag, T_enc)
        if lag:
            fwd = torch.cat([fwd.new_zeros(B, lag, H), fwd[:, : T_enc - lag]], dim=1)
            bwd = torch.cat([bwd[:, lag:], bwd.new_zeros(B, lag, H)], dim=1)
        ci = torch.cat([fwd, bwd], dim=-1).transpose(0, 1)  # (T_enc, B, 2H)
        ci = _drop(ci, nz.ci)
        if T_enc < T:
            ci = torch.cat([ci, ci.new_zeros(T - T_enc, B, 2 * H)])
        con_xg = (model.con.input_gates(ci, slice(0, 2 * H)) + model.con.bias_ih).unbind(0)
        w_con_f = model.con.weight_ih[:, 2 * H :]
        w_gen_u = model.gen.weight_ih[:, :K]
        con_h = model.con_h0.expand(B, -1)
        fac_masks = [None] * T if nz.fac is None else nz.fac.unbind(0)

    factors, us, co_means, co_logvars = [], [], [], []
    for t in range(T):
        xg = gen_xg[t]
        if model.use_con:
            con_h = model.con.step(con_xg[t] + _drop(f, fac_masks[t]) @ w_con_f.t(), con_h)
            co_mean, co_logvar = model.co_linear(con_h).chunk(2, dim=-1)
            u = co_mean if nz.u is None else co_mean + torch.exp(0.5 * co_logvar) * nz.u[t]
            xg = xg + u @ w_gen_u.t()
            us.append(u)
            co_means.append(co_mean)
            co_logvars.append(co_logvar)
        g = model.gen.step(xg, g)
        f = factors_of(g, t + 1)
        factors.append(f)

    fac = torch.stack(factors, dim=1)
    log_rates = model.readout(fac)
    if model.use_con:
        u_all = torch.stack(us, dim=1)
        co_mean_all, co_logvar_all = torch.stack(co_means, 1), torch.stack(co_logvars, 1)
    else:
        u_all = co_mean_all = co_logvar_all = fac.new_zeros(B, T, 0)
    return LFADSOutput(log_rates, fac, ic_mean, ic_logvar, co_mean_all, co_logvar_all, u_all)
