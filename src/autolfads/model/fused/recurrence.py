"""The controller + generator recurrence of LFADS as one autograd.Function.

Per bin t (see lfads.py for the model; noise.py for the masks m and the draws eps):

    controller   h_t = clip(GRU_con([c_t ; m^f_t * f_{t-1}], h_{t-1}))
                 [mu_t, logvar_t] = W_co h_t + b_co,    u_t = mu_t + exp(logvar_t / 2) * eps_t
    generator    g_t = clip(GRU_gen([u_t ; ext_t], g_{t-1}))
    factors      f_t = W_fac (m^g_{t+1} * g_t),         f_{-1} = W_fac (m^g_0 * g_0)

The gate buffers, the cell and its gradient are those of gru.py. The parts of the gate inputs
that do not depend on the recurrence (c_t, ext_t and the biases) are projected for a chunk of
bins in one matmul; inside the loop each GRU adds its recurrent matmul (and the controller its
factor input, the generator its u_t) in place. Posterior means and log-variances are computed for
all bins in one matmul after the loop; inside it only [mu, logvar / 2] feed u_t. The backward
pass runs the same steps in reverse with the chain rule written out and forms the weight
gradients per chunk; the gradient of clip is zero where the state was clipped, as for
torch.clamp.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from autolfads.model.fused import loops
from autolfads.model.fused.gru import (
    bias_grads,
    by_name,
    chunks,
    gate_bias,
    hidden_weight,
    hidden_weight_grad,
    input_weight,
)


class DecoderInputs(NamedTuple):
    """The decoder's inputs other than weights (T bins, B trials; None = absent)."""

    g0: Tensor  # (B, G) initial generator state
    hc0: Tensor | None  # (B, C) initial controller state; None: no controller
    # (T, B, D) controller inputs c_t; None: no controller. (T, B / S, D): shared by S copies of
    # each trial (row r reads trial r % (B / S)), projected once; inference only.
    ci: Tensor | None
    ext: Tensor | None  # (T, B, E) external inputs
    fmask: Tensor | None  # (T, B, F) dropout on f_{t-1} as the controller reads it
    gmask: Tensor | None  # (T + 1, B, G) dropout on g_t before the factor readout
    eps: Tensor | None  # (T, B, K) standard normal draws; None: u_t = mu_t


class DecoderWeights(NamedTuple):
    """The decoder's parameters; the controller's are None without a controller."""

    wg_ih: Tensor  # (3G, K + E) generator input weight, columns [u_t ; ext_t]
    bg_ih: Tensor  # (3G)
    wg_hh: Tensor  # (3G, G)
    bg_hh: Tensor  # (3G)
    w_fac: Tensor  # (F, G) W_fac, rows normalised
    wc_ih: Tensor | None = None  # (3C, D + F) controller input weight, columns [c_t ; f_{t-1}]
    bc_ih: Tensor | None = None  # (3C)
    wc_hh: Tensor | None = None  # (3C, C)
    bc_hh: Tensor | None = None  # (3C)
    w_co: Tensor | None = None  # (2K, C) posterior of u_t: [mu_t, logvar_t] = W_co h_t + b_co
    b_co: Tensor | None = None  # (2K)


_N_IN = len(DecoderInputs._fields)
_INPUTS = ("clip", "T", *DecoderInputs._fields, *DecoderWeights._fields)


def decode(x: DecoderInputs, w: DecoderWeights, clip: float, T: int
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Factors (T, B, F), u (T, B, K) and [mu, logvar] (T, B, 2K) of T bins (K = 0 without a
    controller)."""
    tensors = (*x, *w)
    if not torch.is_grad_enabled():  # no gradient will be asked for: keep no buffers for one
        tensors = tuple(None if a is None else a.detach() for a in tensors)
    return Decoder.apply(clip, T, *tensors)


class Decoder(torch.autograd.Function):
    """decode() as an autograd.Function: its inputs are clip, T and the fields of DecoderInputs
    and DecoderWeights, flattened in that order (autograd only sees tensors passed directly)."""

    @staticmethod
    def forward(ctx, clip, T, *tensors):
        x, w = DecoderInputs(*tensors[:_N_IN]), DecoderWeights(*tensors[_N_IN:])
        B, G = x.g0.shape
        F = w.w_fac.shape[0]
        con = x.ci is not None
        K = w.w_co.shape[0] // 2 if con else 0
        keep = any(ctx.needs_input_grad)
        new = x.g0.new_empty
        neg1 = x.g0.new_full((), -1.0)
        fmask, gmask = x.fmask, x.gmask

        gs = new(T + 1, B, G)  # generator states, gs[0] = g0
        gs[0] = x.g0
        gm = gs if gmask is None else new(T + 1, B, G)  # the states the factor readout sees
        fs = new(T + 1, B, F)  # fs[0] = f_{-1}, fs[t + 1] = f_t
        gen = loops.GenForward(gs, gm, fs, gmask, hidden_weight(w.wg_hh, G).t(), w.w_fac.t())
        gen_b4 = gate_bias(w.bg_ih, w.bg_hh, G)
        if x.ext is not None:
            E = x.ext.shape[-1]
            wge3 = input_weight(w.wg_ih[:, K:], G).t()  # (E, 3G)
        C = D = 0
        if con:
            D = x.ci.shape[-1]
            C = w.wc_hh.shape[1]
            hc = new(T + 1, B, C)
            hc[0] = x.hc0
            # Per bin [mu; logvar / 2], then in place [mu; exp(logvar / 2)], and u: trials last
            # (K x B), since MKL is slow at (B x C) @ (C x 2K) products with 2K this narrow.
            cu = new(T, 2 * K, B)
            half = torch.cat([w.w_co.new_ones(K), w.w_co.new_full((K,), 0.5)])
            wci3 = input_weight(w.wc_ih[:, :D], C).t()  # (D, 3C)
            con_b4 = gate_bias(w.bc_ih, w.bc_hh, C)
            b_ci = x.ci.shape[1]  # trials the controller inputs cover
            if b_ci != B and (keep or B % b_ci):
                raise ValueError(f"controller inputs for {b_ci} of {B} rows: shared inputs are "
                                 "for inference only, and B must be a multiple")
            cf = loops.ConForward(
                hc=hc,
                fd=fs[:T] if fmask is None else new(T, B, F),  # f_{t-1} as the controller reads it
                cu=cu,
                us=new(T, K, B) if x.eps is not None else cu[:, :K],
                eps=None if x.eps is None else x.eps.transpose(1, 2).contiguous(),
                fmask=fmask,
                w_f=input_weight(w.wc_ih[:, D:], C).t(),  # (F, 3C)
                w_hh=hidden_weight(w.wc_hh, C).t(),
                w_co=w.w_co * half[:, None],
                b_co=(w.b_co * half)[:, None],
                w_u=input_weight(w.wg_ih[:, :K], G).t(),  # (K, 3G)
            )
            if gmask is not None:
                torch.mul(x.g0, gmask[0], out=gm[0])
            torch.mm(gm[0], gen.w_fac, out=fs[0])

        pg_bufs, pc_bufs = [], []
        pg = pc = None
        for t0, t1 in chunks(T, B):
            c = t1 - t0
            if keep or pg is None or pg.shape[0] != c:
                pg = new(c, B, 4 * G)
                pc = new(c, B, 4 * C) if con else None
            if x.ext is None:
                pg.copy_(gen_b4.expand(c, B, -1))
            else:
                pg[..., :G] = gen_b4[:G]
                torch.addmm(gen_b4[G:], x.ext[t0:t1].reshape(c * B, E), wge3,
                            out=pg.view(c * B, -1)[:, G:])
            if con:
                pc[..., :C] = con_b4[:C]
                if b_ci == B:
                    torch.addmm(con_b4[C:], x.ci[t0:t1].reshape(c * B, D), wci3,
                                out=pc.view(c * B, -1)[:, C:])
                else:  # one projection per trial, copied to its B / b_ci samples
                    proj = torch.addmm(con_b4[C:], x.ci[t0:t1].reshape(c * b_ci, D), wci3)
                    pc.view(c, B // b_ci, b_ci, 4 * C)[..., C:].copy_(
                        proj.view(c, 1, b_ci, 3 * C).expand(-1, B // b_ci, -1, -1))
                loops.on(pg).decoder_forward(pg, pc, t0, gen, cf, neg1, float(clip))
            else:
                loops.on(pg).generator_forward(pg, t0, gs, gen.w_hh, neg1, float(clip))
            if keep:
                pg_bufs.append(pg)
                pc_bufs.append(pc)
        if not con:  # the factors feed nothing back: one matmul for all bins
            if gmask is not None:
                torch.mul(gs[1:], gmask[1:], out=gm[1:])
            torch.mm(gm[1:].view(T * B, G), gen.w_fac, out=fs[1:].view(T * B, F))
            co, us_out = new(T, B, 0), new(T, B, 0)
        else:
            co = torch.addmm(w.b_co, hc[1:].view(T * B, C), w.w_co.t()).view(T, B, 2 * K)
            us_out = cf.us  # (T, K, B): the u the generator got
        # Outputs are returned as fresh views: ctx keeps the buffers, not the output tensors.
        fac_out, u_ret = fs[1:], us_out.transpose(1, 2) if con else us_out.view(us_out.shape)

        if keep:
            ctx.clip, ctx.dims = clip, (T, B, G, F, K)
            ctx.save_for_backward(*tensors)
            ctx.bufs = (gs, gm, fs, pg_bufs)
            if con:
                ctx.con_bufs = (hc, cf.fd, cu, us_out, pc_bufs)
        return fac_out, u_ret, co

    @staticmethod
    def backward(ctx, d_f, d_u, d_co):
        saved = ctx.saved_tensors
        x, w = DecoderInputs(*saved[:_N_IN]), DecoderWeights(*saved[_N_IN:])
        gs, gm, fs, pg_bufs = ctx.bufs
        del ctx.bufs
        clip = float(ctx.clip)
        T, B, G, F, K = ctx.dims
        con, ext, gmask = x.ci is not None, x.ext, x.gmask
        need = dict(zip(_INPUTS, ctx.needs_input_grad, strict=True))
        new, zeros = gs.new_empty, gs.new_zeros
        spans = chunks(T, B)
        kmax = max(t1 - t0 for t0, t1 in spans)

        dfs = new(T + 1, B, F)  # total gradient of fs
        dg_buf = new(kmax, B, 4 * G)
        dg = zeros(B, G)
        dwg_hh = zeros(3 * G, G)  # rows [n; r; z] until the end
        colsum_g = zeros(4 * G)
        gen = loops.GenBackward(gs, dfs, gmask, new(B, G), hidden_weight(w.wg_hh, G), w.w_fac)
        if ext is not None:
            E = ext.shape[-1]
            dwge_t = zeros(E, 3 * G)
            d_ext = new(T, B, E) if need["ext"] else None
        if d_f is None:
            dfs[1:].zero_()
        else:
            dfs[1:] = d_f
        if con:
            hc, fd, cu, us, pc_bufs = ctx.con_bufs
            del ctx.con_bufs
            C, D = w.wc_hh.shape[1], x.ci.shape[-1]
            dc_buf = new(kmax, B, 4 * C)
            dco = new(T, B, 2 * K)
            if d_co is None:
                dco.zero_()
            else:
                dco.copy_(d_co)
            dhc = zeros(B, C)
            dwc_hh = zeros(3 * C, C)
            # Input-weight gradients are accumulated transposed, (inputs, gates): for narrow
            # inputs (K = 4) MKL is ~10x faster with the narrow side on the left.
            dwci_t, dwcf_t, dwgu_t = zeros(D, 3 * C), zeros(F, 3 * C), zeros(K, 3 * G)
            colsum_c = zeros(4 * C)
            d_ci = new(T, B, D) if need["ci"] else None
            cb = loops.ConBackward(
                hc=hc,
                dco=dco,
                se=None if x.eps is None else cu[:, K:] * x.eps.transpose(1, 2),  # (T, K, B)
                d_u=d_u,
                fmask=x.fmask,
                tmp=new(B, C),
                w_hh=hidden_weight(w.wc_hh, C),
                w_f=w.wc_ih[:, D:],  # (3C, F)
                w_co=w.w_co,
                w_u=w.wg_ih[:, :K].t().contiguous(),  # (K, 3G): du^T = W^T d^T
            )
        else:
            # Without a controller the factors' gradient does not depend on the recurrence.
            dgm_all = (dfs[1:].view(T * B, F) @ w.w_fac).view(T, B, G)
            if gmask is not None:
                dgm_all.mul_(gmask[1:])

        df_prev = None  # gradient of f_{t-1} through the controller's input
        for i in reversed(range(len(spans))):
            t0, t1 = spans[i]
            c, pg = t1 - t0, pg_bufs[i]
            dgc = dg_buf[:c]
            if con:
                dcc = dc_buf[:c]
                dg, dhc, df_prev = loops.on(pg).decoder_backward(
                    pg, pc_bufs[i], t0, dg, dhc, df_prev, dgc, dcc, gen, cb, clip)
            else:
                dg = loops.on(pg).generator_backward(pg, t0, dg, dgc, dgm_all, gen, clip)
            # Gate-gradient rows: [:, :3G] meet the recurrent weights, [:, G:] the inputs.
            rows_g = dgc.reshape(c * B, 4 * G)
            in_g = rows_g[:, G:]
            dwg_hh.addmm_(rows_g[:, : 3 * G].t(), gs[t0:t1].reshape(c * B, G))
            colsum_g += rows_g.sum(0)
            if ext is not None:
                dwge_t.addmm_(ext[t0:t1].reshape(c * B, E).t(), in_g)
                if d_ext is not None:
                    torch.mm(in_g, w.wg_ih[:, K:], out=d_ext[t0:t1].view(c * B, E))
            if con:
                rows_c = dcc.reshape(c * B, 4 * C)
                in_c = rows_c[:, C:]
                dwc_hh.addmm_(rows_c[:, : 3 * C].t(), hc[t0:t1].reshape(c * B, C))
                dwcf_t.addmm_(fd[t0:t1].reshape(c * B, F).t(), in_c)
                dwci_t.addmm_(x.ci[t0:t1].reshape(c * B, D).t(), in_c)
                dwgu_t.addmm_(us[t0:t1].transpose(0, 1).reshape(K, c * B), in_g)
                colsum_c += rows_c.sum(0)
                if d_ci is not None:
                    torch.mm(in_c, w.wc_ih[:, :D], out=d_ci[t0:t1].view(c * B, D))

        grads: dict[str, Tensor | None] = {}
        if con:
            dfs[0] = df_prev
            dgm0 = dfs[0] @ w.w_fac
            dg = dg + dgm0 if gmask is None else torch.addcmul(dg, dgm0, gmask[0])
            dfs_used, gm_used = dfs, gm
        else:
            dfs_used, gm_used = dfs[1:], gm[1:]
        grads["g0"] = dg
        if need["w_fac"]:
            grads["w_fac"] = dfs_used.reshape(-1, F).t() @ gm_used.reshape(-1, G)
        grads["wg_hh"] = hidden_weight_grad(dwg_hh, G)
        grads["bg_ih"], grads["bg_hh"] = bias_grads(colsum_g, G)
        gen_in = []  # wg_ih's columns: [u_t ; ext_t]
        if con:
            gen_in.append(dwgu_t.t())
            dco2 = dco.view(T * B, 2 * K)
            grads.update(
                ci=d_ci, hc0=dhc,
                wc_ih=torch.cat([dwci_t.t(), dwcf_t.t()], dim=1),
                wc_hh=hidden_weight_grad(dwc_hh, C),
                w_co=(hc[1:].reshape(T * B, C).t() @ dco2).t(),
                b_co=dco2.sum(0),
            )
            grads["bc_ih"], grads["bc_hh"] = bias_grads(colsum_c, C)
        if ext is not None:
            gen_in.append(dwge_t.t())
            grads["ext"] = d_ext
        grads["wg_ih"] = torch.cat(gen_in, dim=1) if gen_in else None  # (3G, 0): no inputs
        return by_name(_INPUTS, grads, ctx.needs_input_grad)
