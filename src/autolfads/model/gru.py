"""GRU recurrences with hand-written backward passes.

Autograd records ~25 small ops per GRU step and replays them one by one in the backward pass;
at LFADS sizes (B ~ 200, H ~ 64) each op takes microseconds of bookkeeping next to a few of
arithmetic. Here the forward pass writes the few activations the backward pass needs into
preallocated (T, ...) buffers, the backward pass walks the steps with ~10 fused ops each, and all
weight gradients are left to one large matmul over all T * B rows after the loop.

The equations are those of layers.ClippedGRUCell (the cuDNN form of the GRU):

    r = sigmoid(x_r + h_r),  z = sigmoid(x_z + h_z),  n = tanh(x_n + r * h_n),
    h' = n + z * (h - n)   [= lerp(n, h, z)],  with [h_r, h_z, h_n] = U h + b_hh,

and, for a step with incoming gradient dh',
    dn = dh' (1 - z),   da_n = dn (1 - n^2),   dz = dh' (h - n),   dr = da_n h_n,
    dh = dh' z + [dr r(1-r), dz z(1-z), da_n r] U.

Gradient buffers use 4H columns per step, [d(x_r + h_r), d(x_z + h_z), d h_n, d x_n], so that
the hidden-state gradient (first 3H) and the input-gate gradient (columns 0:2H and 3H:4H) are
both plain strided views of one tensor.
"""

from __future__ import annotations

import torch

_tanh_bwd = torch.ops.aten.tanh_backward.grad_input
_sigmoid_bwd = torch.ops.aten.sigmoid_backward.grad_input


def cell_forward(xg_rz, xg_n, hg, h, rz_out, n_out, h_out, H: int) -> None:
    """One GRU step into preallocated outputs; hg = U h + b_hh (any leading dims)."""
    torch.add(xg_rz, hg[..., : 2 * H], out=rz_out).sigmoid_()
    torch.addcmul(xg_n, rz_out[..., :H], hg[..., 2 * H :], out=n_out).tanh_()
    torch.lerp(n_out, h, rz_out[..., H:], out=h_out)


def cell_backward(dh, rz, n, hg, h_prev, d, tmp, H: int) -> torch.Tensor:
    """Fill d (..., 4H) with the gate gradients of one step; return dh' * z (the direct path)."""
    hz = dh * rz[..., H:]
    torch.sub(dh, hz, out=tmp)  # dn
    d_an = d[..., 3 * H :]
    _tanh_bwd(tmp, n, grad_input=d_an)
    torch.mul(d_an, hg[..., 2 * H :], out=d[..., :H])  # dr
    torch.sub(h_prev, n, out=tmp)
    torch.mul(dh, tmp, out=d[..., H : 2 * H])  # dz
    _sigmoid_bwd(d[..., : 2 * H], rz, grad_input=d[..., : 2 * H])
    torch.mul(d_an, rz[..., :H], out=d[..., 2 * H : 3 * H])
    return hz


def input_gate_grad(d: torch.Tensor, H: int) -> torch.Tensor:
    """(..., 4H) gate gradients -> (..., 3H) gradient of the input gates x_r, x_z, x_n."""
    return torch.cat([d[..., : 2 * H], d[..., 3 * H :]], dim=-1)


class GRUStack(torch.autograd.Function):
    """G independent GRUs of one size run in lockstep, so one bmm per step serves all of them.

    x (G, T, B, N), w_ih (G, 3H, N), b_ih (G, 3H), w_hh (G, 3H, H), b_hh (G, 3H), h0 (G, B, H)
    -> hidden states after each step, (G, T, B, H). No clipping (these are the encoders).
    """

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, h0):
        G, T, B, N = x.shape
        H = w_hh.shape[-1]
        xs = x.reshape(G, T * B, N)
        xg = torch.baddbmm(b_ih.unsqueeze(1), xs, w_ih.transpose(1, 2)).view(G, T, B, 3 * H)
        keep = any(ctx.needs_input_grad)
        steps = T if keep else 1  # without a backward pass one step of scratch is enough
        hs = x.new_empty(G, T + 1, B, H)
        hs[:, 0] = h0
        hg = x.new_empty(steps, G, B, 3 * H)
        rz = x.new_empty(steps, G, B, 2 * H)
        n = x.new_empty(steps, G, B, H)
        w_hh_t, b_hh = w_hh.transpose(1, 2), b_hh.unsqueeze(1)
        for t in range(T):
            s = t if keep else 0
            torch.baddbmm(b_hh, hs[:, t], w_hh_t, out=hg[s])
            xt = xg[:, t]
            cell_forward(xt[..., : 2 * H], xt[..., 2 * H :], hg[s], hs[:, t], rz[s], n[s],
                         hs[:, t + 1], H)
        if keep:
            ctx.save_for_backward(xs, w_ih, w_hh)
            ctx.bufs = (hs, hg, rz, n)
        return hs[:, 1:]

    @staticmethod
    def backward(ctx, grad_hs):
        xs, w_ih, w_hh = ctx.saved_tensors
        hs, hg, rz, n = ctx.bufs
        del ctx.bufs
        G, T1, B, H = hs.shape
        T = T1 - 1
        d = hs.new_empty(G, T, B, 4 * H)
        tmp = hs.new_empty(G, B, H)
        dh = hs.new_zeros(G, B, H)
        for t in reversed(range(T)):
            if grad_hs is not None:
                dh = dh + grad_hs[:, t]
            hz = cell_backward(dh, rz[t], n[t], hg[t], hs[:, t], d[:, t], tmp, H)
            dh = torch.baddbmm(hz, d[:, t, :, : 3 * H], w_hh)
        need = ctx.needs_input_grad
        d_hid = d[..., : 3 * H].reshape(G, T * B, 3 * H)
        d_x = [d[..., : 2 * H].reshape(G, T * B, 2 * H), d[..., 3 * H :].reshape(G, T * B, H)]
        dx = dw_ih = db_ih = dw_hh = db_hh = None
        if need[0]:
            dx = sum(torch.bmm(g, w) for g, w in zip(d_x, w_ih.split([2 * H, H], 1), strict=True))
            dx = dx.view(G, T, B, -1)
        if need[1]:
            dw_ih = torch.cat([torch.bmm(g.transpose(1, 2), xs) for g in d_x], dim=1)
        if need[2]:
            db_ih = torch.cat([g.sum(1) for g in d_x], dim=1)
        if need[3]:
            dw_hh = torch.bmm(d_hid.transpose(1, 2), hs[:, :T].reshape(G, T * B, H))
        if need[4]:
            db_hh = d_hid.sum(1)
        return dx, dw_ih, db_ih, dw_hh, db_hh, dh


def bidirectional(grus, h0s, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run bidirectional nn.GRU modules (one layer, same input x (B, T, N), same hidden size)
    as one GRUStack. h0s: (2, 1, H) initial states. Returns, per module, the forward states
    (T, B, H) and the backward direction's states in its own (reversed) time order."""
    E = len(grus)
    x_tb = x.transpose(0, 1)
    xx = torch.stack([x_tb] * E + [x_tb.flip(0)] * E)
    fwd, rev = "_l0", "_l0_reverse"

    def param(name: str) -> torch.Tensor:
        return torch.stack([getattr(g, name + s) for s in (fwd, rev) for g in grus])

    h0 = torch.stack([h[d] for d in (0, 1) for h in h0s]).expand(-1, x.shape[0], -1)
    hs = GRUStack.apply(xx, param("weight_ih"), param("bias_ih"), param("weight_hh"),
                        param("bias_hh"), h0)
    return [(hs[e], hs[E + e]) for e in range(E)]
