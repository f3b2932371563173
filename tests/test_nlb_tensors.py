"""NLB's tensor .h5 files, written by nlb_tools' own save_to_h5, read as they are."""

import numpy as np
import pytest

from autolfads.config import DataConfig
from autolfads.data.io import load_dataset
from autolfads.errors import UserInputError
from autolfads.inputs import data_lines

make_tensors = pytest.importorskip("nlb_tools.make_tensors")

T, FWD, N_IN, N_OUT, N_TRAIN, N_EVAL = 20, 5, 6, 3, 50, 10


def tensors(rng, n, stage):
    """One stage's NLB arrays: spikes from smooth rates, velocity linear in the rates."""
    t = np.linspace(0, 2 * np.pi, T + FWD)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    rates = np.exp(np.sin(t[None, :, None] + phase) * rng.uniform(0.5, 1.5, N_IN + N_OUT))
    spikes = rng.poisson(rates).astype(np.float32)
    vel = rates[:, :T] @ rng.normal(size=(N_IN + N_OUT, 2))
    return {f"{stage}_spikes_heldin": spikes[:, :T, :N_IN],
            f"{stage}_spikes_heldout": spikes[:, :T, N_IN:],
            f"{stage}_spikes_heldin_forward": spikes[:, T:, :N_IN],
            f"{stage}_spikes_heldout_forward": spikes[:, T:, N_IN:],
            f"{stage}_behavior": vel}


def write(path, arrays):
    make_tensors.save_to_h5(arrays, str(path), overwrite=True)
    return path


def test_train_and_eval_tensors_become_one_dataset_with_eval_as_test(tmp_path):
    rng = np.random.default_rng(0)
    train, ev = tensors(rng, N_TRAIN, "train"), tensors(rng, N_EVAL, "eval")
    ds = load_dataset(write(tmp_path / "mc.h5", {**train, **ev}))
    assert ds.n_neurons == N_IN + N_OUT and ds.n_time == T + FWD
    assert list(ds.heldout_neurons) == list(range(N_IN, N_IN + N_OUT)) and ds.forward_bins == FWD
    np.testing.assert_array_equal(ds.test_inds, np.arange(N_TRAIN, N_TRAIN + N_EVAL))
    assert len(ds.valid_inds) == N_TRAIN // 5 and len(ds.train_inds) == N_TRAIN - N_TRAIN // 5
    full = ds.all_data()
    np.testing.assert_array_equal(full[:N_TRAIN, :T, :N_IN], train["train_spikes_heldin"])
    np.testing.assert_array_equal(full[N_TRAIN:, T:, N_IN:], ev["eval_spikes_heldout_forward"])
    np.testing.assert_allclose(ds.behavior[N_TRAIN:], ev["eval_behavior"], rtol=1e-6)
    assert "3 held-out neurons, 5 forward bins" in ds.summary()
    lines = data_lines(ds, [])
    assert "decode targets: 2 variable(s) over all 20 observed bins" in lines
    assert not any(line.startswith("warning") for line in lines)


def test_eval_trials_of_the_hidden_phase_are_left_out_with_a_warning(tmp_path):
    rng = np.random.default_rng(1)
    train, ev = tensors(rng, 120, "train"), tensors(rng, N_EVAL, "eval")
    hidden = {k: v for k, v in ev.items() if k == "eval_spikes_heldin"}  # what NLB hands out
    ds = load_dataset(write(tmp_path / "hidden.h5", {**train, **hidden}))
    assert ds.n_trials == 120 and len(ds.test_inds) == 12  # the default test split instead
    warn = [line for line in data_lines(ds, []) if line.startswith("warning")]
    assert len(warn) == 1 and "no held-out neurons" in warn[0] and "left out" in warn[0]
    # An explicit choice wins over the file's; without heldout/forward arrays there are none.
    mine = load_dataset(tmp_path / "hidden.h5", DataConfig(heldout_neurons=[0], forward_bins=2))
    assert list(mine.heldout_neurons) == [0] and mine.forward_bins == 2
    only_in = {"train_spikes_heldin": train["train_spikes_heldin"]}
    bare = load_dataset(write(tmp_path / "bare.h5", only_in))
    assert bare.n_neurons == N_IN and not bare.holds_out and bare.behavior is None


def test_behaviour_that_cannot_be_decoded_is_dropped_with_a_warning(tmp_path):
    rng = np.random.default_rng(2)
    train = tensors(rng, N_TRAIN, "train")
    train["train_behavior"][3, 4, 0] = np.nan  # NLB's behaviour_mask marks trials with NaN
    ds = load_dataset(write(tmp_path / "nan.h5", train))
    assert ds.behavior is None
    assert any("NaN" in line for line in data_lines(ds, []) if line.startswith("warning"))


@pytest.mark.parametrize("breaks, message", [
    (lambda a: a.update(train_spikes_heldout=a["train_spikes_heldout"][:-1]), "the same trials"),
    (lambda a: a.update(train_spikes_heldout=a["train_spikes_heldout"][:, :-2]), "bins"),
    (lambda a: a.pop("train_spikes_heldout_forward"), "give both or neither"),
    (lambda a: a.update(  # 7 + 2 forward neurons against 6 + 3: the same total, shifted
        train_spikes_heldin_forward=np.concatenate([a["train_spikes_heldin_forward"],
                                                    a["train_spikes_heldout_forward"][..., :1]],
                                                   axis=2),
        train_spikes_heldout_forward=a["train_spikes_heldout_forward"][..., 1:]),
     "forward arrays do not match"),
    (lambda a: a.update(eval_spikes_heldin=a["eval_spikes_heldin"][:, :-1],
                        eval_spikes_heldout=a["eval_spikes_heldout"][:, :-1]), "must match"),
])
def test_inconsistent_tensors_are_named(tmp_path, breaks, message):
    rng = np.random.default_rng(3)
    arrays = {**tensors(rng, N_TRAIN, "train"), **tensors(rng, N_EVAL, "eval")}
    breaks(arrays)
    with pytest.raises(UserInputError, match=message):
        load_dataset(write(tmp_path / "bad.h5", arrays))


def test_metrics_on_nlb_tensors_score_the_eval_trials(tmp_path):
    """co-bps / fp-bps / velocity R^2 on the eval (test) trials, behaviour over observed bins."""
    from autolfads.results import compute_metrics

    rng = np.random.default_rng(4)
    ds = load_dataset(write(tmp_path / "m.h5", {**tensors(rng, N_TRAIN, "train"),
                                                 **tensors(rng, N_EVAL, "eval")}))
    post = {f"{sp}_rates": np.full_like(ds.split(sp), 0.0) + ds.split(sp).mean((0, 1))
            for sp in ds.splits}  # each neuron's mean rate: the null model scores ~0 bits
    post.update({f"{sp}_inferred_inputs": np.zeros((len(ds.split(sp)), ds.n_time, 0))
                 for sp in ds.splits})
    m = compute_metrics(ds, post)
    assert abs(m["co_bps"]) < 0.05 and abs(m["fp_bps"]) < 0.05
    assert m["co_bps_smoothing"] > 0.05  # held-in smoothing does predict held-out neurons here
    assert "vel_r2" in m and m["vel_r2"] <= 0.05 and "decode_r2" in m


def test_a_forward_window_of_ones_own_drops_the_files_behaviour(tmp_path):
    rng = np.random.default_rng(5)
    path = write(tmp_path / "f.h5", tensors(rng, N_TRAIN, "train"))
    ds = load_dataset(path, DataConfig(forward_bins=2))  # the file has 5
    assert ds.forward_bins == 2 and ds.behavior is None
    assert any("data.forward_bins=2 differs" in w for w in ds.meta["warnings"])


def test_decode_targets_shorter_than_the_observed_bins(tmp_path):
    """Targets over the last 15 of 20 observed bins: velocity R^2 pairs them with those bins."""
    from autolfads.data.io import from_array
    from autolfads.results import compute_metrics

    rng = np.random.default_rng(6)
    rates = rng.gamma(2.0, 0.5, size=(60, 24, 8))
    spikes = rng.poisson(rates).astype(np.float32)
    beh = rates[:, 5:20] @ rng.normal(size=(8, 2))
    ds = from_array(spikes, behavior=beh, cfg=DataConfig(heldout_neurons=[7], forward_bins=4))
    post = {f"{sp}_rates": rates[getattr(ds, f"{sp}_inds")] for sp in ds.splits}
    post.update({f"{sp}_inferred_inputs": np.zeros((len(ds.split(sp)), 24, 0))
                 for sp in ds.splits})
    m = compute_metrics(ds, post)
    assert m["vel_r2"] > 0.99 and m["decode_r2"] > 0.99  # the true rates decode it exactly
