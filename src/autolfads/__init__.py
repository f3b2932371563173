"""autolfads: single-trial firing rates, latent factors and inferred inputs from neural population
recordings with AutoLFADS (LFADS tuned by Population Based Training).

    import autolfads
    result = autolfads.train("session.mat", out="runs/session")
"""

from autolfads.errors import UserInputError

__all__ = ["TrainResult", "UserInputError", "load", "run", "synth", "train"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The API pulls in torch; importing it lazily keeps `autolfads --help` and config use light.
    if name in ("TrainResult", "load", "run", "synth", "train"):
        from autolfads import api

        return getattr(api, name)
    raise AttributeError(f"module 'autolfads' has no attribute {name!r}")
