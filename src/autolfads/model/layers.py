"""Recurrent and readout building blocks.

The GRU here is the cuDNN/PyTorch formulation (reset gate applied to U_n h + b_hn), so one
matmul of the hidden state serves all three gates and the bidirectional encoders can run as fused
`nn.GRU` kernels with the same equations:

    r = sigmoid(W_r x + b_ir + U_r h + b_hr)
    z = sigmoid(W_z x + b_iz + U_z h + b_hz)
    n = tanh(W_n x + b_in + r * (U_n h + b_hn))
    h' = clip((1 - z) * n + z * h, -c, c)          # LFADS clips the state to keep it bounded
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClippedGRUCell(nn.Module):
    """A GRU cell whose input projection can be computed outside the time loop.

    `input_gates(x)` maps inputs of any leading shape to (..., 3H); `step(xg, h)` advances one bin.
    Splitting them lets the caller project all time steps of a known input in one matmul.
    """

    def __init__(self, input_size: int, hidden_size: int, clip: float):
        super().__init__()
        self.hidden_size = hidden_size
        self.clip = clip
        k = hidden_size**-0.5
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.zeros(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hidden_size))
        # LFADS starts the update gate biased towards remembering (z ~ sigmoid(1)).
        with torch.no_grad():
            self.bias_ih[hidden_size : 2 * hidden_size].fill_(1.0)

    def input_gates(self, x: torch.Tensor, cols: slice | None = None) -> torch.Tensor:
        """W x + b for the inputs (optionally only the input columns `cols`, without bias)."""
        if cols is None:
            return F.linear(x, self.weight_ih, self.bias_ih)
        return F.linear(x, self.weight_ih[:, cols])

    def step(self, xg: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """xg: (B, 3H) input gates incl. bias; h: (B, H) -> new h: (B, H)."""
        hg = torch.addmm(self.bias_hh, h, self.weight_hh.t())
        xr, xz, xn = xg.chunk(3, dim=1)
        hr, hz, hn = hg.chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = n + z * (h - n)
        return torch.clamp(h, -self.clip, self.clip)


class NormalizedLinear(nn.Module):
    """Linear map without bias whose rows have unit L2 norm (the LFADS factor readout).

    Normalising the rows stops the model from shrinking the factors and inflating the readout,
    which keeps the factors on a comparable scale across runs.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / in_features**0.5)

    def normalized_weight(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight())
