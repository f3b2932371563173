"""The controller + generator recurrence of LFADS as one autograd.Function.

Per bin t (see lfads.py for the model; noise.py for the masks m and the draws eps):

    controller   h_t = clip(GRU_con(xc_t + W_cf (m^f_t * f_{t-1}), h_{t-1}))
                 [mu_t, logvar_t] = W_co h_t + b_co,    u_t = mu_t + exp(logvar_t / 2) * eps_t
    generator    g_t = clip(GRU_gen(xg_t + W_gu u_t, g_{t-1}))
    factors      f_t = W_fac (m^g_{t+1} * g_t),         f_{-1} = W_fac (m^g_0 * g_0)

xc_t (controller-input gates from the CI encoder) and xg_t (generator bias + external inputs) do
not depend on the recurrence; the caller projects them for all bins at once. The backward pass
runs the same steps in reverse with the chain rule written out (gru.py has the cell's part);
the gradient of clip is zero where the state was clipped, as for torch.clamp.
"""

from __future__ import annotations

import torch

from autolfads.model.gru import cell_backward, cell_forward, input_gate_grad

_clip_bwd = torch.ops.aten.hardtanh_backward


def _spread(w: torch.Tensor, H: int) -> torch.Tensor:
    """Input weights (3H, D) -> (4H, D) aligned with the 4H gate-gradient columns of gru.py."""
    return torch.cat([w[: 2 * H], w.new_zeros(H, w.shape[1]), w[2 * H :]])


class Decoder(torch.autograd.Function):
    """Inputs (T bins, B trials; C con, G gen, F factors, K inferred-input dims; None = absent):

    con_xg (T, B, 3C) or None [no controller], gen_xg (T, B, 3G), g0 (B, G), hc0 (B, C),
    w_cf (3C, F), wc_hh (3C, C), bc_hh (3C), w_co (2K, C), b_co (2K), w_gu (3G, K),
    wg_hh (3G, G), bg_hh (3G), w_fac (F, G), fmask (T, B, F), gmask (T + 1, B, G),
    eps (T, B, K) or None [u = mu], clip.

    Returns factors (T, B, F), u (T, B, K) and [mu, logvar] (T, B, 2K) (K = 0 without controller).
    """

    @staticmethod
    def forward(ctx, con_xg, gen_xg, g0, hc0, w_cf, wc_hh, bc_hh, w_co, b_co, w_gu, wg_hh,
                bg_hh, w_fac, fmask, gmask, eps, clip):
        T, B = gen_xg.shape[:2]
        G, F = wg_hh.shape[1], w_fac.shape[0]
        con = con_xg is not None
        keep = any(ctx.needs_input_grad)
        steps = T if keep else 1
        new = g0.new_empty

        gs = new(T + 1, B, G)  # generator states, gs[0] = g0
        gs[0] = g0
        gm = gs if gmask is None else new(T + 1, B, G)  # the states the factor readout sees
        fs = new(T + 1, B, F)  # fs[0] = f_{-1}, fs[t + 1] = f_t
        hg_g, rz_g, n_g = new(steps, B, 3 * G), new(steps, B, 2 * G), new(steps, B, G)
        w_fac_t, wg_hh_t = w_fac.t(), wg_hh.t()
        if con:
            C, K = wc_hh.shape[1], w_co.shape[0] // 2
            hc = new(T + 1, B, C)
            hc[0] = hc0
            hg_c, rz_c, n_c = new(steps, B, 3 * C), new(steps, B, 2 * C), new(steps, B, C)
            fd = fs[:T] if fmask is None else new(T, B, F)  # f_{t-1} as the controller reads it
            co, us = new(T, B, 2 * K), new(T, B, K)
            se = None if eps is None else new(T, B, K)  # exp(logvar / 2) * eps
            w_cf_t, wc_hh_t, w_co_t, w_gu_t = w_cf.t(), wc_hh.t(), w_co.t(), w_gu.t()
            if gmask is not None:
                torch.mul(g0, gmask[0], out=gm[0])
            torch.mm(gm[0], w_fac_t, out=fs[0])
        else:
            K = 0
            co = us = new(T, B, 0)
        for t in range(T):
            s = t if keep else 0
            if con:
                if fmask is not None:
                    torch.mul(fs[t], fmask[t], out=fd[t])
                xc = torch.addmm(con_xg[t], fd[t], w_cf_t)
                torch.addmm(bc_hh, hc[t], wc_hh_t, out=hg_c[s])
                cell_forward(xc[:, : 2 * C], xc[:, 2 * C :], hg_c[s], hc[t], rz_c[s], n_c[s],
                             hc[t + 1], C)
                hc[t + 1].clamp_(-clip, clip)
                torch.addmm(b_co, hc[t + 1], w_co_t, out=co[t])
                if eps is None:
                    us[t] = co[t, :, :K]
                else:
                    torch.mul(torch.exp(co[t, :, K:] * 0.5), eps[t], out=se[t])
                    torch.add(co[t, :, :K], se[t], out=us[t])
                xg = torch.addmm(gen_xg[t], us[t], w_gu_t)
            else:
                xg = gen_xg[t]
            torch.addmm(bg_hh, gs[t], wg_hh_t, out=hg_g[s])
            cell_forward(xg[:, : 2 * G], xg[:, 2 * G :], hg_g[s], gs[t], rz_g[s], n_g[s],
                         gs[t + 1], G)
            gs[t + 1].clamp_(-clip, clip)
            if gmask is not None:
                torch.mul(gs[t + 1], gmask[t + 1], out=gm[t + 1])
            torch.mm(gm[t + 1], w_fac_t, out=fs[t + 1])

        if keep:
            ctx.clip, ctx.con, ctx.dims = clip, con, (T, B, G, F, K)
            ctx.save_for_backward(w_cf, wc_hh, w_co, w_gu, wg_hh, w_fac, fmask, gmask)
            ctx.bufs = (gs, gm, fs, hg_g, rz_g, n_g)
            if con:
                ctx.con_bufs = (hc, hg_c, rz_c, n_c, fd, us, se)
        return fs[1:], us, co

    @staticmethod
    def backward(ctx, d_f, d_u, d_co):
        w_cf, wc_hh, w_co, w_gu, wg_hh, w_fac, fmask, gmask = ctx.saved_tensors
        gs, gm, fs, hg_g, rz_g, n_g = ctx.bufs
        con, clip = ctx.con, ctx.clip
        T, B, G, F, K = ctx.dims
        need = ctx.needs_input_grad
        new = gs.new_empty
        dfs = new(T + 1, B, F)  # total gradient of fs
        dg_ = new(T, B, 4 * G)
        tmp_g = new(B, G)
        dg = gs.new_zeros(B, G)
        df_prev = None  # gradient of f_{t-1} through the controller's input
        if con:
            hc, hg_c, rz_c, n_c, fd, us, se = ctx.con_bufs
            C = hc.shape[-1]
            dc_ = new(T, B, 4 * C)
            dco = new(T, B, 2 * K)
            tmp_c = new(B, C)
            dhc = gs.new_zeros(B, C)
            w_gu4, w_cf4 = _spread(w_gu, G), _spread(w_cf, C)
        for t in reversed(range(T)):
            dft = dfs[t + 1]
            if d_f is None:
                dft.zero_()
            else:
                dft.copy_(d_f[t])
            if df_prev is not None:
                dft.add_(df_prev)
            dgm = dft @ w_fac
            dg = dg + dgm if gmask is None else torch.addcmul(dg, dgm, gmask[t + 1])
            dg = _clip_bwd(dg, gs[t + 1], -clip, clip)
            d = dg_[t]
            hz = cell_backward(dg, rz_g[t], n_g[t], hg_g[t], gs[t], d, tmp_g, G)
            dg = torch.addmm(hz, d[:, : 3 * G], wg_hh)
            if not con:
                continue
            du = torch.mm(d, w_gu4) if d_u is None else torch.addmm(d_u[t], d, w_gu4)
            dmu, dlv = dco[t, :, :K], dco[t, :, K:]
            if d_co is None:
                dmu.copy_(du)
                dlv.zero_()
            else:
                torch.add(du, d_co[t, :, :K], out=dmu)
                dlv.copy_(d_co[t, :, K:])
            if se is not None:
                dlv.addcmul_(du, se[t], value=0.5)
            dhc = _clip_bwd(torch.addmm(dhc, dco[t], w_co), hc[t + 1], -clip, clip)
            d = dc_[t]
            hz = cell_backward(dhc, rz_c[t], n_c[t], hg_c[t], hc[t], d, tmp_c, C)
            dhc = torch.addmm(hz, d[:, : 3 * C], wc_hh)
            df_prev = torch.mm(d, w_cf4)
            if fmask is not None:
                df_prev.mul_(fmask[t])

        grads = [None] * 17
        rows = T * B
        dhid_g = dg_[..., : 3 * G].reshape(rows, 3 * G)
        dxg = input_gate_grad(dg_, G)  # (T, B, 3G)
        grads[1] = dxg
        if con:
            dfs[0] = df_prev
            dgm0 = dfs[0] @ w_fac
            dg = dg + dgm0 if gmask is None else torch.addcmul(dg, dgm0, gmask[0])
            dfs_used, gm_used = dfs, gm
        else:
            dfs_used, gm_used = dfs[1:], gm[1:]
        grads[2] = dg
        grads[10] = dhid_g.t() @ gs[:T].reshape(rows, G) if need[10] else None
        grads[11] = dhid_g.sum(0) if need[11] else None
        if need[12]:
            grads[12] = dfs_used.reshape(-1, F).t() @ gm_used.reshape(-1, G)
        if con:
            dhid_c = dc_[..., : 3 * C].reshape(rows, 3 * C)
            dxc = input_gate_grad(dc_, C)
            dco2 = dco.view(rows, 2 * K)
            grads[0], grads[3] = dxc, dhc
            if need[4]:
                grads[4] = dxc.view(rows, 3 * C).t() @ fd.reshape(rows, F)
            if need[5]:
                grads[5] = dhid_c.t() @ hc[:T].reshape(rows, C)
            grads[6] = dhid_c.sum(0) if need[6] else None
            grads[7] = dco2.t() @ hc[1:].reshape(rows, C) if need[7] else None
            grads[8] = dco2.sum(0) if need[8] else None
            grads[9] = dxg.view(rows, 3 * G).t() @ us.view(rows, K) if need[9] else None
        del ctx.bufs
        if con:
            del ctx.con_bufs
        return tuple(grads)
