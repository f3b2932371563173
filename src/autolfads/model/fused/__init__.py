"""The fast LFADS recurrences, behind `model.fused` (LFADS.fused): the same equations as the
plain form in lfads.py, computed with hand-written backward passes (gru.py for the encoders,
recurrence.py for controller + generator) whose time loops are compiled with TorchScript where
available (loops.py). tests/test_fast_path.py checks outputs and gradients against the plain form
of the same model.

These two functions marshal an LFADS module's parameters into those recurrences; they take and
return what LFADS.encode / LFADS.decode compute in their place.
"""

from __future__ import annotations

import torch

from autolfads.model.fused.gru import bidirectional
from autolfads.model.fused.recurrence import DecoderInputs, DecoderWeights
from autolfads.model.fused.recurrence import decode as decode_recurrence
from autolfads.model.noise import Noise


def encoders(model, x: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """x (B, T_enc, N) -> the IC encoder's final states [fwd ; bwd] (B, 2 ic_enc_dim), and the CI
    encoder's forward and backward states (T_enc, B, ci_enc_dim), both in time order (None
    without a controller). The encoders run as one stack when their sizes agree."""
    grus = [model.ic_enc] + ([model.ci_enc] if model.use_con else [])
    h0s = [model.ic_enc_h0] + ([model.ci_enc_h0] if model.use_con else [])
    if len({g.hidden_size for g in grus}) == 1:
        states = bidirectional(grus, h0s, x)
    else:
        states = [s for g, h in zip(grus, h0s, strict=True) for s in bidirectional([g], [h], x)]
    h_ic = torch.cat(states[0][2:], dim=-1)
    if not model.use_con:
        return h_ic, None, None
    fwd, rev = states[1][:2]
    return h_ic, fwd, rev.flip(0)


def decode(model, g0: torch.Tensor, ci: torch.Tensor | None, ext: torch.Tensor | None,
           nz: Noise, T: int) -> tuple[torch.Tensor, ...]:
    """Controller + generator for T bins from g0 (B, G), c_t and ext_t (T, B, .) -> factors,
    u, posterior mean and logvar of u, each (B, T, .)."""
    con, gen = (model.con if model.use_con else None), model.gen
    x = DecoderInputs(g0=g0, hc0=model.con_h0.expand(g0.shape[0], -1) if con else None, ci=ci,
                      ext=ext, fmask=nz.fac, gmask=nz.gen, eps=nz.u)
    w = DecoderWeights(gen.weight_ih, gen.bias_ih, gen.weight_hh, gen.bias_hh,
                       model.fac.normalized_weight())
    if con:
        w = w._replace(wc_ih=con.weight_ih, bc_ih=con.bias_ih, wc_hh=con.weight_hh,
                       bc_hh=con.bias_hh, w_co=model.co_linear.weight, b_co=model.co_linear.bias)
    fac, u, co = decode_recurrence(x, w, model.cfg.cell_clip, T)
    K = model.cfg.co_dim
    bt = lambda a: a.transpose(0, 1)  # noqa: E731  (time-major inside, batch-major outside)
    # Factors in the counts' own (B, T, .) layout: the cost's elementwise passes over the rates
    # run at full speed only when both are laid out alike (copying fac is the cheaper copy).
    return bt(fac).contiguous(), bt(u), bt(co[..., :K]), bt(co[..., K:])
