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

import torch

from autolfads.model import loops
from autolfads.model.gru import (
    bias_grads,
    chunks,
    gate_bias,
    hidden_weight,
    hidden_weight_grad,
    input_weight,
)


class Decoder(torch.autograd.Function):
    """Inputs (T bins, B trials; C con, G gen, F factors, K inferred-input dims, D controller
    input width, E external inputs; None = absent):

    ci (T, B, D) controller inputs or None [no controller], ext (T, B, E) or None, g0 (B, G),
    hc0 (B, C), wc_ih (3C, D + F), bc_ih (3C), wc_hh (3C, C), bc_hh (3C), w_co (2K, C),
    b_co (2K), wg_ih (3G, K + E), bg_ih (3G), wg_hh (3G, G), bg_hh (3G), w_fac (F, G),
    fmask (T, B, F), gmask (T + 1, B, G), eps (T, B, K) or None [u = mu], clip, T.

    Returns factors (T, B, F), u (T, B, K) and [mu, logvar] (T, B, 2K) (K = 0 without controller).
    """

    @staticmethod
    def forward(ctx, ci, ext, g0, hc0, wc_ih, bc_ih, wc_hh, bc_hh, w_co, b_co, wg_ih, bg_ih,
                wg_hh, bg_hh, w_fac, fmask, gmask, eps, clip, T):
        B, G = g0.shape
        F = w_fac.shape[0]
        con = ci is not None
        K = w_co.shape[0] // 2 if con else 0
        keep = any(ctx.needs_input_grad)
        new = g0.new_empty
        neg1 = g0.new_full((), -1.0)

        gs = new(T + 1, B, G)  # generator states, gs[0] = g0
        gs[0] = g0
        gm = gs if gmask is None else new(T + 1, B, G)  # the states the factor readout sees
        fs = new(T + 1, B, F)  # fs[0] = f_{-1}, fs[t + 1] = f_t
        w_fac_t, wg_hh_t = w_fac.t(), hidden_weight(wg_hh, G).t()
        gen_b4 = gate_bias(bg_ih, bg_hh, G)
        if ext is not None:
            E = ext.shape[-1]
            wge3 = input_weight(wg_ih[:, K:], G).t()  # (E, 3G)
        C = D = 0
        hc = fd = cu = us = eps_kb = wcf3 = wc_hh_t = w_coh = b_coh = wgu3 = None
        if con:
            D = ci.shape[-1]
            C = wc_hh.shape[1]
            hc = new(T + 1, B, C)
            hc[0] = hc0
            fd = fs[:T] if fmask is None else new(T, B, F)  # f_{t-1} as the controller reads it
            # Per bin [mu; logvar / 2], then in place [mu; exp(logvar / 2)], and u: trials last
            # (K x B), since MKL is slow at (B x C) @ (C x 2K) products with 2K this narrow.
            cu = new(T, 2 * K, B)
            us = new(T, K, B) if eps is not None else None
            eps_kb = None if eps is None else eps.transpose(1, 2).contiguous()
            wci3 = input_weight(wc_ih[:, :D], C).t()  # (D, 3C)
            wcf3 = input_weight(wc_ih[:, D:], C).t()  # (F, 3C)
            con_b4 = gate_bias(bc_ih, bc_hh, C)
            wc_hh_t = hidden_weight(wc_hh, C).t()
            half = torch.cat([w_co.new_ones(K), w_co.new_full((K,), 0.5)])
            w_coh, b_coh = w_co * half[:, None], (b_co * half)[:, None]
            wgu3 = input_weight(wg_ih[:, :K], G).t()  # (K, 3G)
            if gmask is not None:
                torch.mul(g0, gmask[0], out=gm[0])
            torch.mm(gm[0], w_fac_t, out=fs[0])

        pg_bufs, pc_bufs = [], []
        pg = pc = None
        for t0, t1 in chunks(T, B):
            c = t1 - t0
            if keep or pg is None or pg.shape[0] != c:
                pg = new(c, B, 4 * G)
                pc = new(c, B, 4 * C) if con else None
            if ext is None:
                pg.copy_(gen_b4.expand(c, B, -1))
            else:
                pg[..., :G] = gen_b4[:G]
                torch.addmm(gen_b4[G:], ext[t0:t1].reshape(c * B, E), wge3,
                            out=pg.view(c * B, -1)[:, G:])
            if con:
                pc[..., :C] = con_b4[:C]
                torch.addmm(con_b4[C:], ci[t0:t1].reshape(c * B, D), wci3,
                            out=pc.view(c * B, -1)[:, C:])
            loops.decoder_forward(
                pg, pc, t0, gs, gm, fs, hc, fd, cu, us, fmask, gmask, eps_kb, wcf3, wc_hh_t, w_coh,
                b_coh, wgu3, wg_hh_t, w_fac_t, neg1, float(clip), C, G, K)
            if keep:
                pg_bufs.append(pg)
                pc_bufs.append(pc)
        if not con:  # the factors feed nothing back: one matmul for all bins
            if gmask is not None:
                torch.mul(gs[1:], gmask[1:], out=gm[1:])
            torch.mm(gm[1:].view(T * B, G), w_fac_t, out=fs[1:].view(T * B, F))
            co, us_out = new(T, B, 0), new(T, B, 0)
        else:
            co = torch.addmm(b_co, hc[1:].view(T * B, C), w_co.t()).view(T, B, 2 * K)
            us_out = us if us is not None else cu[:, :K]  # (T, K, B): the u the generator got
        # Outputs are returned as fresh views: ctx keeps the buffers, not the output tensors.
        fac_out, u_ret = fs[1:], us_out.transpose(1, 2) if con else us_out.view(us_out.shape)

        if keep:
            ctx.clip, ctx.con, ctx.dims = clip, con, (T, B, G, F, K)
            ctx.save_for_backward(ci, ext, wc_ih, wc_hh, w_co, wg_ih, wg_hh, w_fac, fmask, gmask,
                                  eps)
            ctx.bufs = (gs, gm, fs, pg_bufs)
            if con:
                ctx.con_bufs = (hc, fd, cu, us_out, pc_bufs)
        return fac_out, u_ret, co

    @staticmethod
    def backward(ctx, d_f, d_u, d_co):
        ci, ext, wc_ih, wc_hh, w_co, wg_ih, wg_hh, w_fac, fmask, gmask, eps = ctx.saved_tensors
        gs, gm, fs, pg_bufs = ctx.bufs
        del ctx.bufs
        con, clip = ctx.con, ctx.clip
        T, B, G, F, K = ctx.dims
        need = ctx.needs_input_grad
        new, zeros = gs.new_empty, gs.new_zeros
        spans = chunks(T, B)
        kmax = max(t1 - t0 for t0, t1 in spans)

        dfs = new(T + 1, B, F)  # total gradient of fs
        dg_buf = new(kmax, B, 4 * G)
        tmp_g = new(B, G)
        dg = zeros(B, G)
        dwg_hh = zeros(3 * G, G)  # rows [n; r; z] until the end
        colsum_g = zeros(4 * G)
        wg_hh_g = hidden_weight(wg_hh, G)
        if ext is not None:
            E = ext.shape[-1]
            dwge_t = zeros(E, 3 * G)
            d_ext = new(T, B, E) if need[1] else None
        if d_f is None:
            dfs[1:].zero_()
        else:
            dfs[1:] = d_f
        C = 0
        hc = fd = us = se = dco = tmp_c = dhc = wgu_b = wcf_b = wc_hh_g = dgm_all = None
        if con:
            hc, fd, cu, us, pc_bufs = ctx.con_bufs
            del ctx.con_bufs
            C, D = wc_hh.shape[1], ci.shape[-1]
            dc_buf = new(kmax, B, 4 * C)
            dco = new(T, B, 2 * K)
            tmp_c = new(B, C)
            dhc = zeros(B, C)
            dwc_hh = zeros(3 * C, C)
            # Input-weight gradients are accumulated transposed, (inputs, gates): for narrow
            # inputs (K = 4) MKL is ~10x faster with the narrow side on the left.
            dwci_t, dwcf_t, dwgu_t = zeros(D, 3 * C), zeros(F, 3 * C), zeros(K, 3 * G)
            colsum_c = zeros(4 * C)
            d_ci = new(T, B, D) if need[0] else None
            wcf_b = wc_ih[:, D:]  # (3C, F)
            wgu_b = wg_ih[:, :K].t().contiguous()  # (K, 3G): du^T = W^T d^T
            wc_hh_g = hidden_weight(wc_hh, C)
            if eps is not None:  # exp(logvar / 2) * eps, (T, K, B)
                se = cu[:, K:] * eps.transpose(1, 2)
            if d_co is None:
                dco.zero_()
            else:
                dco.copy_(d_co)
        else:
            # Without a controller the factors' gradient does not depend on the recurrence.
            dgm_all = (dfs[1:].view(T * B, F) @ w_fac).view(T, B, G)
            if gmask is not None:
                dgm_all.mul_(gmask[1:])

        df_prev = None  # gradient of f_{t-1} through the controller's input
        for i in reversed(range(len(spans))):
            t0, t1 = spans[i]
            c, pg = t1 - t0, pg_bufs[i]
            dgc = dg_buf[:c]
            pc = dcc = None
            if con:
                pc, dcc = pc_bufs[i], dc_buf[:c]
            dg, dhc, df_prev = loops.decoder_backward(
                pg, pc, t0, dg, dhc, df_prev, dgc, dcc, dfs, dgm_all, gs, hc, dco, se, d_u,
                fmask, gmask, tmp_g, tmp_c, w_fac, wg_hh_g, wgu_b, w_co, wc_hh_g, wcf_b,
                float(clip), C, G, K)
            # Gate-gradient rows: [:, :3G] meet the recurrent weights, [:, G:] the inputs.
            rows_g = dgc.reshape(c * B, 4 * G)
            in_g = rows_g[:, G:]
            dwg_hh.addmm_(rows_g[:, : 3 * G].t(), gs[t0:t1].reshape(c * B, G))
            colsum_g += rows_g.sum(0)
            if ext is not None:
                dwge_t.addmm_(ext[t0:t1].reshape(c * B, E).t(), in_g)
                if d_ext is not None:
                    torch.mm(in_g, wg_ih[:, K:], out=d_ext[t0:t1].view(c * B, E))
            if con:
                rows_c = dcc.reshape(c * B, 4 * C)
                in_c = rows_c[:, C:]
                dwc_hh.addmm_(rows_c[:, : 3 * C].t(), hc[t0:t1].reshape(c * B, C))
                dwcf_t.addmm_(fd[t0:t1].reshape(c * B, F).t(), in_c)
                dwci_t.addmm_(ci[t0:t1].reshape(c * B, D).t(), in_c)
                dwgu_t.addmm_(us[t0:t1].transpose(0, 1).reshape(K, c * B), in_g)
                colsum_c += rows_c.sum(0)
                if d_ci is not None:
                    torch.mm(in_c, wc_ih[:, :D], out=d_ci[t0:t1].view(c * B, D))

        grads = [None] * 20
        if con:
            dfs[0] = df_prev
            dgm0 = dfs[0] @ w_fac
            dg = dg + dgm0 if gmask is None else torch.addcmul(dg, dgm0, gmask[0])
            dfs_used, gm_used = dfs, gm
        else:
            dfs_used, gm_used = dfs[1:], gm[1:]
        grads[2] = dg
        if need[14]:
            grads[14] = dfs_used.reshape(-1, F).t() @ gm_used.reshape(-1, G)
        grads[12] = hidden_weight_grad(dwg_hh, G)
        grads[11], grads[13] = bias_grads(colsum_g, G)
        gen_in = []
        if con:
            gen_in.append(dwgu_t.t())
            rows = T * B
            grads[0], grads[3] = d_ci, dhc
            grads[4] = torch.cat([dwci_t.t(), dwcf_t.t()], dim=1)
            grads[5], grads[7] = bias_grads(colsum_c, C)
            grads[6] = hidden_weight_grad(dwc_hh, C)
            dco2 = dco.view(rows, 2 * K)
            grads[8] = (hc[1:].reshape(rows, C).t() @ dco2).t()
            grads[9] = dco2.sum(0)
        if ext is not None:
            gen_in.append(dwge_t.t())
            grads[1] = d_ext
        grads[10] = torch.cat(gen_in, dim=1) if gen_in else None  # (3G, 0): no inputs
        return tuple(g if g is None or need[i] else None for i, g in enumerate(grads))
