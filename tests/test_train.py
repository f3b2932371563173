"""Training loop: exact checkpoint round trip, hyperparameter changes, sampling."""

import math

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_dataset

from autolfads.errors import UserInputError
from autolfads.model.observations import poisson_nll
from autolfads.training.loop import Trainer, ramp
from autolfads.training.parallel import Shards
from autolfads.training.process import setup_process
from autolfads.training.sampling import posterior_outputs, sample_and_average


def new_trainer(cfg, data) -> Trainer:
    """A Trainer built as the entry points build one: in a process set up (threads, RNG seeds)
    for cfg.train, so two built from one config start from the same weights."""
    return Trainer(cfg, data, shard_threads=setup_process(cfg.train))


def params(tr: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in tr.model.state_dict().items()}


def test_checkpoint_round_trip_equals_straight_through(tiny, tmp_path):
    cfg = tiny_config(seed=3)
    cfg.model.dropout_rate = 0.2  # exercise every random draw: dropout, CD, posterior samples
    cfg.model.sv_rate = 0.1
    a = new_trainer(cfg, tiny)
    a.fit(2, early_stop=False)
    path = a.save(tmp_path / "ck.pt")

    straight = new_trainer(cfg, tiny)
    straight.fit(4, early_stop=False)

    resumed = new_trainer(cfg, tiny)
    resumed.load(path)
    assert resumed.state.epoch == 2
    resumed.fit(2, early_stop=False)

    assert resumed.state.epoch == straight.state.epoch == 4
    p, q = params(resumed), params(straight)
    assert p.keys() == q.keys()
    for k in p:
        assert torch.allclose(p[k], q[k], atol=1e-6, rtol=1e-5), k
    h1, h2 = resumed.state.history, straight.state.history
    assert [round(h["valid_recon"], 6) for h in h1] == [round(h["valid_recon"], 6) for h in h2]
    # Adam's moments came back too, not just the weights.
    s1 = resumed.optimizer.state_dict()["state"]
    s2 = straight.optimizer.state_dict()["state"]
    assert all(torch.allclose(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"], atol=1e-8) for i in s1)


def test_restored_lr_is_overridden_by_new_hparams(tiny, tmp_path):
    a = new_trainer(tiny_config(lr=1e-3), tiny)
    a.fit(1, early_stop=False)
    path = a.save(tmp_path / "ck.pt")
    b = new_trainer(tiny_config(lr=1e-3), tiny)
    b.load(path)
    b.set_hparams({"lr": 2.5e-4, "dropout_rate": 0.3, "kl_co_scale": 1e-5})
    assert all(g["lr"] == 2.5e-4 for g in b.optimizer.param_groups)
    assert b.model.dropout_rate == 0.3 and b.cfg.train.kl_co_scale == 1e-5
    assert b.hparams()["lr"] == 2.5e-4


def test_training_lowers_validation_cost_and_checkpoint_loads_weights_only(tmp_path):
    ds = tiny_dataset(n_trials=60)
    tr = new_trainer(tiny_config(lr=1e-2, seed=0), ds)
    x, truth = tr.valid_x, torch.as_tensor(ds.valid_truth)
    null = float(poisson_nll(x, x.mean((0, 1)).log().expand_as(x)).mean())  # ~1.54
    oracle = float(poisson_nll(x, truth.log()).mean())  # ~1.31
    tr.fit(40, early_stop=False)
    # At least half of the way from the mean-rate model to the true rates, on held-out trials.
    assert tr.state.best < null - 0.5 * (null - oracle)
    assert math.isfinite(tr.state.smoothed)
    path = tr.save(tmp_path / "m.pt")
    ck = torch.load(path, weights_only=True)  # the only way we ever load checkpoints
    assert ck["state"]["epoch"] == 40


def test_ramps():
    assert ramp(0, 0, 4) == 0.25 and ramp(3, 0, 4) == 1.0 and ramp(9, 0, 4) == 1.0
    assert ramp(0, 2, 4) == 0.0 and ramp(0, 0, 0) == 1.0


def test_nan_score_stops_training(tiny):
    tr = new_trainer(tiny_config(), tiny)
    tr.state.smoothed = float("nan")
    assert tr.should_stop()


def test_posterior_sampling_shapes_and_per_trial_averaging(tiny):
    tr = new_trainer(tiny_config(), tiny)
    tr.fit(3, early_stop=False)
    post = posterior_outputs(tr, n_samples=6)
    n_tr, n_va = len(tiny.train_inds), len(tiny.valid_inds)
    assert post["train_rates"].shape == (n_tr, 15, 8)
    assert post["valid_factors"].shape == (n_va, 15, 6)
    assert post["train_inferred_inputs"].shape == (n_tr, 15, 2)
    assert post["valid_ic_mean"].shape == (n_va, 8)
    assert np.all(post["train_rates"] > 0)
    # Chunked (several passes) and single-pass batching agree up to sampling noise, trial by trial.
    torch.manual_seed(0)
    big = sample_and_average(tr.model, tr.valid_x, n_samples=200, max_batch=10**6)["rates"]
    torch.manual_seed(1)
    small = sample_and_average(tr.model, tr.valid_x, n_samples=200, max_batch=400)["rates"]
    assert np.abs(big - small).max() < 0.1 * big.mean()
    mean_pass = torch.exp(tr.model(tr.valid_x, sample=False).obs_params).detach().numpy()
    per_trial = [np.corrcoef(big[i].ravel(), mean_pass[i].ravel())[0, 1] for i in range(n_va)]
    assert min(per_trial) > 0.9


def test_sampling_passes_are_larger_on_a_gpu_and_shrink_when_out_of_memory(tiny, monkeypatch):
    """1024 rows a pass on a CPU; on a GPU about 2**20 rows x bins (at least 1024 rows). A pass
    out of GPU memory is retried at a quarter of its rows; an explicit size is not changed."""
    from autolfads.training import sampling

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert sampling.rows_per_pass(cpu, 50) == 1024
    assert sampling.rows_per_pass(gpu, 50) == 20971
    assert sampling.rows_per_pass(gpu, 5000) == 1024
    assert sampling.rows_per_pass(gpu, 4) == 65536  # short trials: no larger than measured
    tr = new_trainer(tiny_config(), tiny)
    tr.fit(1, early_stop=False)
    plain = sampling._passes
    tried = []

    def small_memory(model, data, ext, n, rows, *rest):
        tried.append(rows)
        if rows > 2000:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return plain(model, data, ext, n, rows, *rest)

    monkeypatch.setattr(sampling, "_passes", small_memory)
    monkeypatch.setattr(sampling, "rows_per_pass", lambda device, n_bins: 32000)
    torch.manual_seed(0)
    got = sampling.sample_and_average(tr.model, tr.valid_x, n_samples=20)["rates"]
    assert tried == [32000, 8000, 2000]
    torch.manual_seed(0)
    want = plain(tr.model, tr.valid_x, None, 20, 2000, None, True)["rates"]
    np.testing.assert_array_equal(got, want)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        sampling.sample_and_average(tr.model, tr.valid_x, n_samples=20, max_batch=4000)


def test_early_stopping_waits_for_the_ramps(tiny):
    """Patience counts only epochs with the KL and L2 weights fully on."""
    # A frozen model (lr ~ 0, no smoothing): the validation cost never improves after epoch 0.
    cfg = tiny_config(patience=2, kl_increase_epochs=6, l2_increase_epochs=4, epochs=40,
                      lr=1e-12, smoothing=0.0)
    cfg.model.dropout_rate = 0.0
    tr = new_trainer(cfg, tiny)
    tr.fit()
    assert tr.ramps_end() == 6
    assert tr.state.best_epoch == 0
    # Epochs 6 and 7 (1-based) are the first with full weights; without the rule it would have
    # stopped after epoch 3.
    assert tr.state.epoch == 7 and tr.state.bad_epochs == 2


def test_sample_validation_holds_out_the_same_entries_for_every_worker():
    """PBT workers differ in train.seed (trainable.py: seed + 1000 * worker); the SV mask must
    not, or after an exploit the copied weights would have trained on the new worker's
    held-out entries and workers' scores would cover different entries."""
    ds = tiny_dataset(n_trials=40)
    masks = []
    for worker in range(3):
        cfg = tiny_config(seed=1000 * worker)
        cfg.model.sv_rate = 0.2
        tr = Trainer(cfg, ds)
        masks.append((tr.train_sv, tr.valid_sv))
    for train_sv, valid_sv in masks[1:]:
        assert torch.equal(train_sv, masks[0][0]) and torch.equal(valid_sv, masks[0][1])
    assert 0.15 < float(masks[0][0].float().mean()) < 0.25
    assert not torch.equal(masks[0][0][:8], masks[0][1][:8])  # the two splits' masks differ
    # A checkpoint names its entries; one from other entries is refused, with the reason.
    ck = tr.checkpoint()
    assert len(ck["sv_mask"]) == 16
    tr.load_checkpoint(ck)
    other = tiny_config()
    other.model.sv_rate = 0.3
    with pytest.raises(UserInputError, match="other sample-validation entries"):
        Trainer(other, ds).load_checkpoint(ck)


def test_sampling_encodes_once_and_gives_the_same_outputs_as_encoding_every_sample(tiny):
    """Posterior sampling encodes each trial once (issue 13): for the same draws, the outputs
    equal those of running the whole model on every copy of every trial."""
    tr = new_trainer(tiny_config(seed=5), tiny)
    tr.fit(1, early_stop=False)
    model, x, S = tr.model, tr.valid_in, 7
    model.eval()
    torch.manual_seed(11)
    with torch.no_grad():
        xs = x.repeat(S, 1, 1)
        out = model(xs, sample=True, noise=model.draw_noise(xs, sample=True))
    want = {"rates": model.obs.mean(out.obs_params), "factors": out.factors,
            "inferred_inputs": out.inferred_inputs}
    assert model.cfg.co_dim > 0  # the controller's path is exercised too
    for fused in (True, False):
        model.fused = fused
        for encode_once, shards in ((True, Shards(1)), (True, Shards(2)), (False, Shards(2))):
            torch.manual_seed(11)
            got = sample_and_average(model, x, n_samples=S, max_batch=10**6, shards=shards,
                                     encode_once=encode_once)
            for key, full in want.items():
                mean = full.reshape(S, x.shape[0], *full.shape[1:]).mean(0).numpy()
                np.testing.assert_allclose(got[key], mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got["ic_mean"], out.ic_mean[: x.shape[0]].numpy(),
                                       rtol=1e-5, atol=1e-6)
    # Shared controller inputs are for inference: the fused recurrence refuses them in training.
    model.fused = True
    model.train()
    enc = model.encode(x, model.draw_noise(x, sample=False))
    nz = model.draw_noise(x.repeat(2, 1, 1))
    with pytest.raises(ValueError, match="inference only"):
        model.generate((enc[0].repeat(2, 1), enc[1].repeat(2, 1), enc[2]), None, nz, x.shape[1])


def test_sampling_with_fewer_samples_than_threads_splits_the_trials(tiny):
    """One posterior sample on two threads: each thread takes half the trials (before, one
    thread did all the work), with the outputs of one thread."""
    from autolfads.training.sampling import _shard_items

    tr = new_trainer(tiny_config(seed=5), tiny)
    tr.fit(1, early_stop=False)
    x = tr.train_in
    B = x.shape[0]
    assert [(lo, hi) for _, lo, hi in _shard_items(Shards(2), B, 1)] == [(0, B // 2), (B // 2, B)]
    for encode_once in (True, False):
        got = []
        for shards in (Shards(1), Shards(2)):
            torch.manual_seed(3)
            got.append(sample_and_average(tr.model, x, n_samples=1, shards=shards,
                                          encode_once=encode_once))
        for key in got[0]:
            np.testing.assert_allclose(got[1][key], got[0][key], rtol=1e-5, atol=1e-6)


@pytest.mark.live_report
def test_train_report_false_leaves_the_page_to_the_report_command(tmp_path):
    from autolfads import api

    cfg = tiny_config(epochs=1)
    cfg.train.report = False
    api.train(tiny_dataset(), tmp_path / "r", config=cfg, quiet=True)
    assert (tmp_path / "r" / "output" / "lfads_output.h5").is_file()
    assert not (tmp_path / "r" / "report").exists()
    assert "report: false" in (tmp_path / "r" / "config.yaml").read_text()
