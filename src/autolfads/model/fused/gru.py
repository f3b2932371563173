"""GRU recurrences with hand-written backward passes.

Autograd records ~25 small ops per GRU step and replays them one by one in the backward pass;
at LFADS sizes (B ~ 200, H ~ 64) each op takes microseconds of bookkeeping next to a few of
arithmetic. Here every step is one matmul and five elementwise ops written into preallocated
buffers, the backward pass walks the steps with ~10 ops each (the cell and the time loops are in
loops.py, compiled with TorchScript), and the weight gradients are left to a few large matmuls
per chunk of steps.

The equations are those of layers.ClippedGRUCell (the cuDNN form of the GRU):

    r = sigmoid(a_r),  z = sigmoid(a_z),  n = tanh(x_n + r * h_n),  h' = n + z * (h - n),
    [a_r, a_z] = W_rz x + b_irz + U_rz h + b_hrz,   x_n = W_n x + b_in,   h_n = U_n h + b_hn.

Gate buffer (4H columns per step, one layout for the forward and the backward pass):

    forward   P = [h_n, a_r, a_z, 2 x_n]  ->  (in place)  [h_n, r, z, n]
    backward  d = [d h_n, d a_r, d a_z, d x_n]

The input projection fills columns H..4H in one matmul with the weight [W_r; W_z; 2 W_n] and
bias [b_ir + b_hr, b_iz + b_hz, 2 b_in]; columns 0..H start at b_hn; the recurrent matmul then
adds [U_n; U_r; U_z] h into columns 0..3H in place (the r and z columns receive both products).
So every product is exactly as wide as the gates it feeds. In the backward pass the
hidden-state gradient of a step is d[:, :3H] @ [U_n; U_r; U_z] and the input gradient
d[:, H:] @ [W_r; W_z; W_n], the weight in its own row order. tanh(a) is computed as
2 sigmoid(2 a) - 1 (the factor 2 is folded into the x_n column and the value=2 of addcmul): the
same function, and torch's CPU sigmoid is several times faster than its tanh.

Time is processed in chunks of ~2048 rows (steps x batch): each chunk's gate buffer is a
separate tensor, so no buffer of the size of the whole sequence is allocated and freed per call
(those are mmapped by malloc and cost a page fault per 4 KiB on every use), and the backward
pass's gradient buffer is one chunk, reused, and warm in cache for the weight-gradient matmuls.

For a step with incoming gradient dh',
    dn = dh' (1 - z),   d x_n = dn (1 - n^2),   dz = dh' (h - n),   dr = d x_n h_n,
    d h_n = d x_n r,    dh = dh' z + [d h_n, dr r(1-r), dz z(1-z)] [U_n; U_r; U_z].
"""

from __future__ import annotations

import math

import torch

from autolfads.model.fused import loops

CHUNK_ROWS = 2048  # steps x batch rows per chunk of the time loop


def chunks(T: int, B: int) -> list[tuple[int, int]]:
    """[(t0, t1), ...]: T steps in near-equal chunks of about CHUNK_ROWS rows."""
    n = max(1, min(T, math.ceil(T * B / CHUNK_ROWS)))
    k = math.ceil(T / n)
    return [(t0, min(T, t0 + k)) for t0 in range(0, T, k)]


def input_weight(w: torch.Tensor, H: int) -> torch.Tensor:
    """Input weights (..., 3H, D) [W_r; W_z; W_n] -> [W_r; W_z; 2 W_n], for columns H..4H."""
    return torch.cat([w[..., : 2 * H, :], 2.0 * w[..., 2 * H :, :]], dim=-2)


def gate_bias(b_ih: torch.Tensor, b_hh: torch.Tensor, H: int) -> torch.Tensor:
    """(..., 3H) biases -> (..., 4H) gate-buffer bias [b_hn, b_ir + b_hr, b_iz + b_hz, 2 b_in]."""
    return torch.cat([b_hh[..., 2 * H :], b_ih[..., : 2 * H] + b_hh[..., : 2 * H],
                      2.0 * b_ih[..., 2 * H :]], dim=-1)


def hidden_weight(w_hh: torch.Tensor, H: int) -> torch.Tensor:
    """Recurrent weights (..., 3H, H) [U_r; U_z; U_n] -> [U_n; U_r; U_z], for columns 0..3H."""
    return torch.cat([w_hh[..., 2 * H :, :], w_hh[..., : 2 * H, :]], dim=-2)


def hidden_weight_grad(g: torch.Tensor, H: int) -> torch.Tensor:
    """Gradient in rows [n; r; z] (as d[:, :3H]^T @ h gives it) -> rows [r; z; n] of w_hh."""
    return torch.cat([g[..., H:, :], g[..., :H, :]], dim=-2)


def bias_grads(colsum: torch.Tensor, H: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column sums (..., 4H) of the gate gradients -> (d b_ih, d b_hh)."""
    return colsum[..., H:], torch.cat([colsum[..., H : 3 * H], colsum[..., :H]], dim=-1)


def by_name(names: tuple[str, ...], grads: dict[str, torch.Tensor | None], need: tuple[bool, ...]
            ) -> tuple[torch.Tensor | None, ...]:
    """An autograd.Function's backward result from its gradients keyed by input name: in input
    order, None for inputs without a gradient or whose gradient is not needed."""
    return tuple(grads.get(k) if n else None for k, n in zip(names, need, strict=True))


class GRUStack(torch.autograd.Function):
    """G independent GRUs of one size run in lockstep, so one bmm per step serves all of them.

    x (G, T, B, N), w_ih (G, 3H, N), b_ih (G, 3H), w_hh (G, 3H, H), b_hh (G, 3H), h0 (G, B, H)
    -> (last states (G, B, H), then per GRU its states after each step (T, B, H)).
    No clipping (these are the encoders).
    """

    INPUTS = ("x", "w_ih", "b_ih", "w_hh", "b_hh", "h0")

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, h0):
        G, T, B, N = x.shape
        H = w_hh.shape[-1]
        xs = x.reshape(G, T * B, N)
        w3 = input_weight(w_ih, H).transpose(1, 2)  # (G, N, 3H)
        b4 = gate_bias(b_ih, b_hh, H).unsqueeze(1)  # (G, 1, 4H)
        u = hidden_weight(w_hh, H).transpose(1, 2)  # (G, H, 3H)
        keep = any(ctx.needs_input_grad)
        neg1 = x.new_full((), -1.0)
        hs = x.new_empty(G, T + 1, B, H)
        hs[:, 0] = h0
        bufs, scratch = [], None
        for t0, t1 in chunks(T, B):
            c = t1 - t0
            if keep or scratch is None or scratch.shape[1] != c * B:
                scratch = x.new_empty(G, c * B, 4 * H)
            scratch[..., :H] = b4[..., :H]
            torch.baddbmm(b4[..., H:], xs[:, t0 * B : t1 * B], w3, out=scratch[..., H:])
            P = scratch.view(G, c, B, 4 * H)
            loops.on(P).stack_forward(P, hs, u, t0, neg1, H)
            if keep:
                bufs.append(P)
        if keep:
            ctx.save_for_backward(xs, w_ih, w_hh)
            ctx.bufs = (hs, bufs)
        # Unused outputs get no gradient (not zeros of the whole sequence): the IC encoders
        # only pass on their last state, the CI encoders their whole sequence.
        ctx.set_materialize_grads(False)
        return (hs[:, T], *(hs[g, 1:] for g in range(G)))

    @staticmethod
    def backward(ctx, grad_last, *grad_seqs):
        xs, w_ih, w_hh = ctx.saved_tensors
        hs, bufs = ctx.bufs
        del ctx.bufs
        G, T1, B, H = hs.shape
        T = T1 - 1
        N = xs.shape[-1]
        need = ctx.needs_input_grad
        spans = chunks(T, B)
        k = max(t1 - t0 for t0, t1 in spans)
        dbuf = hs.new_empty(G, k, B, 4 * H)
        tmp = hs.new_empty(G, B, H)
        dh = hs.new_zeros(G, B, H) if grad_last is None else grad_last.clone()
        seq_idx = [g for g, s in enumerate(grad_seqs) if s is not None]
        seq_grads = [grad_seqs[g] for g in seq_idx]
        u = hidden_weight(w_hh, H)
        dw_hh = hs.new_zeros(G, 3 * H, H)
        dw_t = hs.new_zeros(G, N, 3 * H)  # transposed: MKL is much faster with N on the left
        colsum = hs.new_zeros(G, 4 * H)
        dx = hs.new_empty(G, T, B, N) if need[0] else None
        for (t0, t1), P in zip(reversed(spans), reversed(bufs), strict=True):
            c = t1 - t0
            d = dbuf if c == k else hs.new_empty(G, c, B, 4 * H)
            dh = loops.on(dh).stack_backward(dh, P, hs, d, tmp, u, t0, seq_idx, seq_grads, H)
            rows = d.reshape(G, c * B, 4 * H)
            dw_hh.baddbmm_(rows[..., : 3 * H].transpose(1, 2),
                           hs[:, t0:t1].reshape(G, c * B, H))
            dw_t.baddbmm_(xs[:, t0 * B : t1 * B].transpose(1, 2), rows[..., H:])
            colsum += rows.sum(1)
            if dx is not None:
                dx[:, t0:t1] = torch.bmm(rows[..., H:], w_ih).view(G, c, B, N)
        db_ih, db_hh = bias_grads(colsum, H)
        return by_name(GRUStack.INPUTS, dict(x=dx, w_ih=dw_t.transpose(1, 2), b_ih=db_ih,
                                             w_hh=hidden_weight_grad(dw_hh, H), b_hh=db_hh,
                                             h0=dh), need)


def bidirectional(grus, h0s, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Run bidirectional nn.GRU modules (one layer, same input x (B, T, N), same hidden size)
    as one GRUStack. h0s: (2, 1, H) initial states. Returns, per module, the forward states
    (T, B, H), the backward direction's states in its own (reversed) time order, and the final
    states (B, H) of both directions."""
    E = len(grus)
    x_tb = x.transpose(0, 1)
    xx = torch.stack([x_tb] * E + [x_tb.flip(0)] * E)
    fwd, rev = "_l0", "_l0_reverse"

    def param(name: str) -> torch.Tensor:
        return torch.stack([getattr(g, name + s) for s in (fwd, rev) for g in grus])

    h0 = torch.stack([h[d] for d in (0, 1) for h in h0s]).expand(-1, x.shape[0], -1)
    last, *seqs = GRUStack.apply(xx, param("weight_ih"), param("bias_ih"), param("weight_hh"),
                                 param("bias_hh"), h0)
    return [(seqs[e], seqs[E + e], last[e], last[E + e]) for e in range(E)]
