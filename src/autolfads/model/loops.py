"""The time loops of the GRU recurrences (gru.py, recurrence.py), compiled with TorchScript.

A step is a handful of small ops; run from Python, each op also pays the interpreter (and holds
the GIL, so the batch shards of training/parallel.py could not run in parallel). Compiled, a whole
chunk of steps runs in C++ without the GIL. Where TorchScript is unavailable (it is deprecated
in recent torch releases) or AUTOLFADS_NO_SCRIPT=1 is set, the same functions run as Python.

Buffers and equations: see gru.py (gate buffers [r, z, h_n, n] / [d a_r, d a_z, d h_n, d x_n])
and recurrence.py (controller / generator step). All functions write into preallocated tensors.
"""

# ruff: noqa: UP006, UP035, UP045, SIM108  (TorchScript reads typing's Optional/List/Tuple)
from __future__ import annotations

import os
import warnings
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def cell_forward(P: Tensor, h: Tensor, h_out: Tensor, neg1: Tensor, H: int) -> None:
    """One step on a gate buffer P = [h_n, a_r, a_z, 2 x_n] (U h already added), in place to
    [h_n, r, z, n]; writes the new state to h_out. neg1: a 0-dim tensor holding -1."""
    P.narrow(-1, H, 2 * H).sigmoid_()
    n = P.narrow(-1, 3 * H, H)
    torch.addcmul(n, P.narrow(-1, H, H), P.narrow(-1, 0, H), value=2.0, out=n)
    n.sigmoid_()
    torch.add(neg1, n, alpha=2.0, out=n)  # 2 sigmoid(2a) - 1 = tanh(a)
    torch.lerp(n, h, P.narrow(-1, 2 * H, H), out=h_out)


def cell_backward(dh: Tensor, P: Tensor, h_prev: Tensor, d: Tensor, tmp: Tensor, H: int
                  ) -> Tensor:
    """Fill d (..., 4H) with the gate gradients [d h_n, d a_r, d a_z, d x_n] of one step from
    the step's forward buffer P = [h_n, r, z, n]; return dh' * z (the direct path to the
    previous state)."""
    hn = P.narrow(-1, 0, H)
    rz = P.narrow(-1, H, 2 * H)
    n = P.narrow(-1, 3 * H, H)
    hz = dh * rz.narrow(-1, H, H)
    torch.sub(dh, hz, out=tmp)  # dn
    d_xn = d.narrow(-1, 3 * H, H)
    torch.ops.aten.tanh_backward(tmp, n, grad_input=d_xn)
    torch.mul(d_xn, hn, out=d.narrow(-1, H, H))  # dr
    torch.sub(h_prev, n, out=tmp)
    torch.mul(dh, tmp, out=d.narrow(-1, 2 * H, H))  # dz
    d_rz = d.narrow(-1, H, 2 * H)
    torch.ops.aten.sigmoid_backward(d_rz, rz, grad_input=d_rz)
    torch.mul(d_xn, rz.narrow(-1, 0, H), out=d.narrow(-1, 0, H))  # d h_n
    return hz


# -- encoders: G GRUs in lockstep (gru.GRUStack) ------------------------------------------------

def stack_forward(P: Tensor, hs: Tensor, u: Tensor, t0: int, neg1: Tensor, H: int) -> None:
    """P (G, c, B, 4H) input-projected gate buffers of steps t0..t0+c-1; hs (G, T+1, B, H)."""
    for j in range(P.shape[1]):
        t = t0 + j
        Pj = P.select(1, j)
        h = hs.select(1, t)
        Pj.narrow(-1, 0, 3 * H).baddbmm_(h, u)
        cell_forward(Pj, h, hs.select(1, t + 1), neg1, H)


def stack_backward(dh: Tensor, P: Tensor, hs: Tensor, d: Tensor, tmp: Tensor, u: Tensor,
                   t0: int, seq_idx: List[int], seq_grads: List[Tensor], H: int) -> Tensor:
    """Steps t0+c-1 .. t0 in reverse: fills d (G, c, B, 4H); returns the state gradient.
    u (G, 3H, H): recurrent weights in gate-buffer rows [U_n; U_r; U_z]."""
    for j in range(P.shape[1] - 1, -1, -1):
        t = t0 + j
        for k in range(len(seq_idx)):
            dh.select(0, seq_idx[k]).add_(seq_grads[k].select(0, t))
        dj = d.select(1, j)
        hz = cell_backward(dh, P.select(1, j), hs.select(1, t), dj, tmp, H)
        dh = torch.baddbmm(hz, dj.narrow(-1, 0, 3 * H), u)
    return dh


# -- controller + generator (recurrence.Decoder) -------------------------------------------------

def decoder_forward(pg: Tensor, pc: Optional[Tensor], t0: int, gs: Tensor, gm: Tensor,
                    fs: Tensor, hc: Optional[Tensor], fd: Optional[Tensor], cu: Optional[Tensor],
                    us: Optional[Tensor], fmask: Optional[Tensor], gmask: Optional[Tensor],
                    eps: Optional[Tensor], wcf3: Optional[Tensor], wc_hh_t: Optional[Tensor],
                    w_coh: Optional[Tensor], b_coh: Optional[Tensor], wgu3: Optional[Tensor],
                    wg_hh_t: Tensor, w_fac_t: Tensor, neg1: Tensor, clip: float, C: int, G: int,
                    K: int) -> None:
    """Steps t0..t0+c-1 of the decoder. pg (c, B, 4G) / pc (c, B, 4C): gate buffers with the
    inputs known in advance; pc None: no controller (then the factors are left to the caller).
    Trials-last: cu (T, 2K, B) [mu; logvar / 2] -> [mu; exp(logvar / 2)], us and eps (T, K, B);
    w_coh (2K, C) and b_coh (2K, 1) are W_co, b_co with the logvar rows halved. wcf3 (F, 3C) and
    wgu3 (K, 3G): factor and u input weights for gate columns C..4C / G..4G (gru.input_weight),
    transposed; wc_hh_t, wg_hh_t: recurrent weights for columns 0..3C / 0..3G (gru.hidden_weight),
    transposed."""
    for j in range(pg.shape[0]):
        t = t0 + j
        pgj = pg.select(0, j)
        if pc is not None and hc is not None and fd is not None and cu is not None \
                and wcf3 is not None and wc_hh_t is not None and w_coh is not None \
                and b_coh is not None and wgu3 is not None:
            if fmask is not None:
                torch.mul(fs.select(0, t), fmask.select(0, t), out=fd.select(0, t))
            pcj = pc.select(0, j)
            pcj.narrow(-1, C, 3 * C).addmm_(fd.select(0, t), wcf3)
            pcj.narrow(-1, 0, 3 * C).addmm_(hc.select(0, t), wc_hh_t)
            h_new = hc.select(0, t + 1)
            cell_forward(pcj, hc.select(0, t), h_new, neg1, C)
            h_new.clamp_(-clip, clip)
            cut = cu.select(0, t)  # (2K, B)
            torch.addmm(b_coh, w_coh, h_new.t(), out=cut)
            if eps is not None and us is not None:
                std = cut.narrow(0, K, K).exp_()
                u = torch.addcmul(cut.narrow(0, 0, K), std, eps.select(0, t),
                                  out=us.select(0, t))
            else:
                u = cut.narrow(0, 0, K)
            pgj.narrow(-1, G, 3 * G).addmm_(u.t(), wgu3)
        g_new = gs.select(0, t + 1)
        pgj.narrow(-1, 0, 3 * G).addmm_(gs.select(0, t), wg_hh_t)
        cell_forward(pgj, gs.select(0, t), g_new, neg1, G)
        g_new.clamp_(-clip, clip)
        if pc is not None:
            if gmask is not None:
                torch.mul(g_new, gmask.select(0, t + 1), out=gm.select(0, t + 1))
            torch.mm(gm.select(0, t + 1), w_fac_t, out=fs.select(0, t + 1))


def decoder_backward(pg: Tensor, pc: Optional[Tensor], t0: int, dg: Tensor,
                     dhc: Optional[Tensor], df_prev: Optional[Tensor], dgc: Tensor,
                     dcc: Optional[Tensor], dfs: Tensor, dgm_all: Optional[Tensor], gs: Tensor,
                     hc: Optional[Tensor], dco: Optional[Tensor], se: Optional[Tensor],
                     d_u: Optional[Tensor], fmask: Optional[Tensor], gmask: Optional[Tensor],
                     tmp_g: Tensor, tmp_c: Optional[Tensor], w_fac: Tensor, wg_hh: Tensor,
                     wgu_b: Optional[Tensor], w_co: Optional[Tensor], wc_hh: Optional[Tensor],
                     wcf_b: Optional[Tensor], clip: float, C: int, G: int, K: int
                     ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Steps t0+c-1 .. t0 of the decoder in reverse: fills dgc (c, B, 4G) and dcc (c, B, 4C)
    with gate gradients; returns the gradients of g, h^con and f_{t0-1} before step t0.
    dco (T, B, 2K): gradient of [mu, logvar], updated in place; se (T, K, B): exp(logvar/2) eps;
    wg_hh, wc_hh: recurrent weights in gate-buffer rows (gru.hidden_weight); wgu_b (K, 3G): the
    generator's u-input weight, transposed; wcf_b (3C, F): the controller's factor-input weight."""
    for j in range(pg.shape[0] - 1, -1, -1):
        t = t0 + j
        if dgm_all is None:
            dft = dfs.select(0, t + 1)
            if df_prev is not None:
                dft.add_(df_prev)
            dgm = torch.mm(dft, w_fac)
            if gmask is None:
                dg = dg + dgm
            else:
                dg = torch.addcmul(dg, dgm, gmask.select(0, t + 1))
        else:
            dg = dg + dgm_all.select(0, t)
        dg = torch.ops.aten.hardtanh_backward(dg, gs.select(0, t + 1), -clip, clip)
        d = dgc.select(0, j)
        hz = cell_backward(dg, pg.select(0, j), gs.select(0, t), d, tmp_g, G)
        dg = torch.addmm(hz, d.narrow(-1, 0, 3 * G), wg_hh)
        if pc is not None and dcc is not None and dhc is not None and hc is not None \
                and dco is not None and tmp_c is not None and wgu_b is not None \
                and w_co is not None and wc_hh is not None and wcf_b is not None:
            # (K, 3G) @ (3G, B): MKL is fast with the narrow K on the left
            du = torch.mm(wgu_b, d.narrow(-1, G, 3 * G).t()).t()
            if d_u is not None:
                du = du + d_u.select(0, t)
            dco_t = dco.select(0, t)
            dco_t.narrow(-1, 0, K).add_(du)
            if se is not None:
                dco_t.narrow(-1, K, K).addcmul_(du, se.select(0, t).t(), value=0.5)
            dhc = torch.ops.aten.hardtanh_backward(torch.addmm(dhc, dco_t, w_co),
                                                   hc.select(0, t + 1), -clip, clip)
            dc = dcc.select(0, j)
            hz = cell_backward(dhc, pc.select(0, j), hc.select(0, t), dc, tmp_c, C)
            dhc = torch.addmm(hz, dc.narrow(-1, 0, 3 * C), wc_hh)
            df = torch.mm(dc.narrow(-1, C, 3 * C), wcf_b)
            if fmask is not None:
                df.mul_(fmask.select(0, t))
            df_prev = df
    return dg, dhc, df_prev


def _compiled():
    if os.environ.get("AUTOLFADS_NO_SCRIPT", "") not in ("", "0"):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tuple(torch.jit.script(f) for f in (stack_forward, stack_backward,
                                                       decoder_forward, decoder_backward))
    except Exception:  # noqa: BLE001  (any failure: run the same functions as Python)
        return None


_fns = _compiled()
SCRIPTED = _fns is not None
if _fns is not None:
    stack_forward, stack_backward, decoder_forward, decoder_backward = _fns  # noqa: F811
