"""Neural data in and out: the Dataset, file readers/writers and the synthetic Lorenz generator."""

from autolfads.data.dataset import Dataset

__all__ = ["Dataset"]
