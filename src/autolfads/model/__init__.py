"""LFADS in PyTorch: encoders -> controller -> generator -> factors -> observations (Poisson
spike counts, or gamma, zero-inflated gamma, Gaussian for continuous signals)."""

from autolfads.model.lfads import LFADS, LFADSOutput

__all__ = ["LFADS", "LFADSOutput"]
