"""What identifies the data a run trained on, so that `--resume` (of `train` and of `run`)
continues on that data and no other: its shape and a hash of its values, kept in run.json."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from autolfads.data.dataset import Dataset
from autolfads.errors import UserInputError


def data_fingerprint(dataset: Dataset) -> dict:
    """{"data_shape": trials x bins x neurons, "data_sha256": of the float32 values,
    "split_sha256": of which trials train, validate and test, the held-out neurons and
    forward bins}."""
    x = np.ascontiguousarray(dataset.all_data(), dtype=np.float32)
    split = hashlib.sha256()  # which trials and neurons the model reads, and how far it predicts
    for inds in (dataset.train_inds, dataset.valid_inds, dataset.test_inds,
                 dataset.heldout_neurons, [dataset.forward_bins]):
        split.update(np.asarray(inds, dtype=np.int64).tobytes() + b"|")
    return {"data_shape": list(x.shape), "data_sha256": hashlib.sha256(x.tobytes()).hexdigest(),
            "split_sha256": split.hexdigest()}


def check_same_data(recorded: dict, dataset: Dataset, data: object) -> None:
    """UserInputError unless `dataset` is the data of run.json's `recorded` fingerprint (a run
    started before fingerprints were kept passes)."""
    now = data_fingerprint(dataset)
    if recorded.get("data_sha256", now["data_sha256"]) == now["data_sha256"]:
        if recorded.get("split_sha256", now["split_sha256"]) != now["split_sha256"]:
            raise UserInputError("--resume: these data.* settings split the trials, hold out "
                                 "neurons or forward bins differently from the run; resume "
                                 "without changing them")
        return
    shape = recorded.get("data_shape")
    differs = (f"{' x '.join(map(str, now['data_shape']))} (trials x bins x neurons) "
               f"against the run's {' x '.join(map(str, shape))}"
               if shape != now["data_shape"] else "the same shape, different values")
    name = data if isinstance(data, (str, Path)) else "this data"  # an array has no name
    raise UserInputError(f"--resume: {name} is not the data the run trained on "
                         f"({differs}); resume with {recorded.get('data') or 'that data'}")
