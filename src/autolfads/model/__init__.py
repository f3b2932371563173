"""LFADS in PyTorch: encoders -> controller -> generator -> factors -> Poisson observations."""

from autolfads.model.lfads import LFADS, LFADSOutput

__all__ = ["LFADS", "LFADSOutput"]
