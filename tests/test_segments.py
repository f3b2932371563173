"""Continuous recordings (no trials): cut into overlapping segments, trained as trials, and the
outputs merged back into one recording in the user's layout."""

import json
import re

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import tiny_config

from autolfads import api
from autolfads.analysis.decoding import decode_r2
from autolfads.analysis.export import export
from autolfads.analysis.metrics import bits_per_spike, r2_rates, smoothing_baseline
from autolfads.analysis.plots import example_traces, recording_pieces
from autolfads.analysis.report import write_report
from autolfads.analysis.report_data import gather, metric_rows, recording_segments
from autolfads.config import DataConfig
from autolfads.data.io import from_array, load_dataset
from autolfads.data.segments import plan
from autolfads.errors import UserInputError
from autolfads.rundir.location import Location


@pytest.mark.parametrize("n_bins,length,overlap", [(1000, 100, 20), (1013, 100, 20),
                                                   (300, 50, 0), (250, 100, 60), (100, 100, 10)])
def test_segments_cover_the_recording_and_merge_back_exactly(n_bins, length, overlap):
    seg = plan(n_bins, length, overlap, "x", min_bins=5)
    assert seg.starts[0] == 0 and seg.starts[-1] + length == n_bins
    assert (np.diff(seg.starts) <= length - overlap).all()  # no gap, regular steps
    x = np.random.default_rng(0).normal(size=(n_bins, 3))
    pieces = seg.cut(x)
    assert pieces.shape == (len(seg.starts), length, 3)
    np.testing.assert_array_equal(pieces[-1], x[seg.starts[-1]:])
    np.testing.assert_allclose(seg.merge(pieces), x, rtol=1e-6, atol=1e-6)


def test_the_merge_cross_fades_over_each_overlap():
    """Segment A says 0 everywhere, B says 1: over their 4 shared bins the merge rises 1/5,
    2/5, 3/5, 4/5 (each segment trusted least at its own edge), and is 0 / 1 elsewhere."""
    seg = plan(16, 10, 4, "x", min_bins=5)
    assert list(seg.starts) == [0, 6]
    merged = seg.merge(np.array([np.zeros(10), np.ones(10)])[:, :, None])[:, 0]
    np.testing.assert_allclose(merged, [0] * 6 + [0.2, 0.4, 0.6, 0.8] + [1] * 6, atol=1e-6)


def test_a_2d_array_is_one_recording_read_in_its_layout():
    rng = np.random.default_rng(1)
    x = rng.poisson(2.0, size=(2000, 12)).astype(float)  # time x neurons
    beh = rng.normal(size=(2000, 2))
    ds = from_array(x, truth=x + 0.5, behavior=beh)
    assert ds.segments is not None and ds.layout == "time_neurons"
    assert (ds.n_time, ds.n_neurons, ds.n_trials) == (100, 12, 24)
    assert ds.summary() == ("one recording of 2000 bins x 12 neurons, cut into 24 segments of "
                            "100 bins (training segments overlapping by 20) (20 train / 4 valid, "
                            "no test segments); "
                            "segments set by data.segment_bins, data.segment_overlap")
    np.testing.assert_array_equal(ds.segments.join(ds.all_data()), x)
    np.testing.assert_array_equal(ds.segments.join(ds.all_truth()), x + 0.5)
    np.testing.assert_allclose(ds.segments.merge(ds.behavior), beh, rtol=1e-5, atol=1e-6)
    # neurons x time, as the tutorial's layout without trials
    mat = from_array(x.T, layout="neurons_time_trials", layout_guessed=True)
    np.testing.assert_array_equal(mat.segments.join(mat.all_data()), x)
    assert mat.layout == "neurons_time" and not mat.meta["warnings"]
    # read the wrong way round: never swapped behind the user's back, but said, with the fix
    words = ("if its other axis (2000 long) is time, give --layout time_neurons (data.layout); "
             "otherwise record longer")
    with pytest.raises(UserInputError, match=re.escape(words)):
        from_array(x, layout="neurons_time_trials", layout_guessed=True)
    # the other axis longer but too short for these segments too: the swap, then shorter ones
    with pytest.raises(UserInputError, match=re.escape(
            "if its other axis (400 long) is time, give --layout time_neurons (data.layout) with "
            "shorter segments (data.segment_bins); otherwise")):
        from_array(x[:400].copy(), layout="neurons_time")
    wide = rng.poisson(1.0, size=(1500, 1200)).astype(np.float32)  # many channels (calcium ROIs)
    kept = from_array(wide, layout="neurons_time_trials", layout_guessed=True)
    assert (kept.n_neurons, kept.segments.n_bins) == (1500, 1200)
    assert any("1200 bins of 1500 channels, more channels than bins; if the first axis is "
               "time, give --layout time_neurons" in w for w in kept.meta["warnings"])
    said = DataConfig(segment_bins=40, segment_overlap=0)
    ds = from_array(x, cfg=said)
    assert (ds.n_time, ds.n_trials) == (40, 50)


@pytest.mark.parametrize("split", [DataConfig(), DataConfig(split="random", split_seed=3),
                                   DataConfig(valid_every=3, test_every=4, segment_overlap=50)])
def test_held_out_segments_share_no_bin_with_training_segments(split):
    """Validation and test scores come from bins no training segment saw; the recording is
    still covered end to end, and the data joins back exactly."""
    x = np.random.default_rng(6).poisson(1.0, size=(12_345, 3)).astype(float)
    ds = from_array(x, cfg=split)
    seg = ds.segments
    ends = seg.starts + seg.length
    assert len(ds.valid_inds) and len(ds.train_inds) > len(ds.valid_inds)
    for h in np.concatenate([ds.valid_inds, ds.test_inds]):
        apart = (ends[ds.train_inds] <= seg.starts[h]) | (seg.starts[ds.train_inds] >= ends[h])
        assert apart.all(), h
    assert ends[-1] == 12_345 and ds.train_inds[-1] == len(seg.starts) - 1
    assert (seg.starts[1:] <= ends[:-1]).all()  # no gap
    np.testing.assert_array_equal(seg.join(ds.all_data()), x)
    np.testing.assert_allclose(seg.merge(ds.all_data()), x, atol=1e-5)
    assert "shares no bin with a training segment" in ds.meta["split"]


@pytest.mark.parametrize("kwargs,words", [
    ({"cfg": DataConfig(segment_bins=3000)}, "data.segment_bins=3000 is longer than the "
                                             "recording (2000 bins)"),
    ({"cfg": DataConfig(segment_bins=100, segment_overlap=100)}, "data.segment_overlap=100 must "
                                                                 "be at least 0 and less than"),
    ({"cfg": DataConfig(segment_bins=3)}, "a segment needs at least 5 bins"),
    ({"conditions": np.zeros(20)}, "'conditions': names trials, but 'data' is one continuous"),
    ({"behavior": np.zeros((1999, 2))}, "with a continuous recording it must be time x "
                                        "variables over the recording's 2000 bins"),
])
def test_a_recording_that_cannot_be_cut_is_one_clear_error(kwargs, words):
    x = np.random.default_rng(2).poisson(1.0, size=(2000, 6)).astype(float)
    with pytest.raises(UserInputError, match=re.escape(words)):
        from_array(x, **kwargs)


def test_a_short_recording_says_it_gives_too_few_segments_and_what_would_do():
    x = np.random.default_rng(2).poisson(1.0, size=(500, 6)).astype(float)
    words = ("'data': 2-D, read as one continuous recording of 500 bins, which makes 6 segments "
             "of 100 bins; LFADS needs at least 10 to train and validate: give shorter segments "
             "(--set data.segment_bins=65) or a longer recording (trials: a 3-D array")
    with pytest.raises(UserInputError, match=re.escape(words)):
        from_array(x)
    assert from_array(x, cfg=DataConfig(segment_bins=65)).n_trials == 10
    with pytest.raises(UserInputError, match="1 segment of 30 bins; .*: record longer"):
        from_array(x[:30])


def test_a_layout_of_two_axes_is_for_a_recording_only():
    with pytest.raises(UserInputError, match="names one continuous recording"):
        from_array(np.ones((20, 10, 4)), layout="neurons_time")


def test_a_recording_trains_and_its_outputs_are_merged_back(tmp_path, monkeypatch):
    """A .mat recording (neurons x time, the tutorial's habit): the run's .h5 and .mat hold the
    segments as trials and the merged recording, time x dim / dim x time, whose every bin is the
    cross-faded mean of the segments that cover it."""
    rng = np.random.default_rng(3)
    t = np.arange(600)
    rates = np.exp(np.sin(t[:, None] / 15.0 + np.arange(8)[None, :]))
    path = tmp_path / "rec.mat"
    spikes = rng.poisson(rates).astype(float)
    behavior = np.stack([rates[:, 0] - rates[:, 1], rates[:, 2]], axis=1)  # time x variables
    scipy.io.savemat(path, {"data": spikes.T, "truth": rates.T, "behavior": behavior,
                            "bin_size_ms": 10.0})
    cfg = tiny_config(epochs=2)
    cfg.data.segment_bins, cfg.data.segment_overlap = 30, 6
    api.train(path, tmp_path / "run", config=cfg, quiet=True)
    with h5py.File(tmp_path / "run/output/lfads_output.h5") as f:
        rates_seg, merged = f["rates"][()], f["rates_continuous"][()]
        starts = f["segment_starts"][()]
        assert f["factors_continuous"].shape == (600, 6)
        assert f.attrs["input_layout"] == "neurons_time" and f.attrs["segment_overlap"] == 6
    assert rates_seg.shape == (len(starts), 30, 8) and merged.shape == (600, 8)
    assert starts[1] == 24
    np.testing.assert_allclose(merged[:24], rates_seg[0, :24], rtol=1e-6)  # one segment only
    w = np.arange(1, 7) / 7  # bins 24..29: segment 1 rises, segment 0 falls
    expected = (w[::-1, None] * rates_seg[0, 24:] + w[:, None] * rates_seg[1, :6])
    np.testing.assert_allclose(merged[24:30], expected, rtol=1e-5)
    mat = scipy.io.loadmat(tmp_path / "run/output/lfads_output.mat")
    np.testing.assert_allclose(mat["rates_continuous"], merged.T, rtol=1e-6)
    np.testing.assert_array_equal(mat["segment_starts"].ravel(), starts + 1)
    np.testing.assert_allclose(mat["truth_continuous"], rates.T, rtol=1e-6)
    # every array is dim first here, so the input's own order would only mislead
    assert "layout" not in mat and mat["segment_bins"].item() == 30
    npz = np.load(export(tmp_path / "run", "npz", tmp_path / "o.npz"))
    np.testing.assert_allclose(npz["rates_continuous"], merged)
    assert (npz["segment_bins"], npz["segment_overlap"], npz["recording_bins"]) == (30, 6, 600)

    # Scores over all of it are over the recording (each bin once), not its overlapping
    # segments; so are the report's "all" rows and the smoothing baseline (smoothed whole).
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    assert m["split_unit"] == "segments" and "(valid segments)" in api.summary_line(m, None)
    assert m["r2_rates"] == pytest.approx(r2_rates(merged[None], rates[None]), rel=1e-5)
    per_segment = r2_rates(rates_seg, rates[starts[:, None] + np.arange(30)])
    assert m["r2_rates"] != pytest.approx(per_segment, rel=1e-4)
    smooth = smoothing_baseline(spikes[None], rates[None])
    assert m["r2_smoothing"] == pytest.approx(smooth["r2_rates"], rel=1e-6)
    assert m["decode_r2_0"] == pytest.approx(decode_r2(merged[None], behavior[None])[0], rel=1e-6)
    rows, panels = metric_rows(gather(Location(tmp_path / "run")))
    by = {(r["method"].split(" (")[0], r["trials"].split(" (")[0]): r for r in rows}
    assert by["LFADS", "all"]["r2"] == pytest.approx(m["r2_rates"], rel=1e-5)
    assert by["Gaussian smoothing", "all"]["r2"] == pytest.approx(m["r2_smoothing"], rel=1e-6)
    assert by["LFADS", "all"]["bps"] == pytest.approx(bits_per_spike(merged[None], spikes[None]),
                                                      rel=1e-5)
    assert panels["__truth__"].shape == (1, 600, 8)
    # a validation segment's baseline is its stretch of the recording smoothed whole
    valid = np.asarray(gather(Location(tmp_path / "run")).outputs.arrays["valid_inds"])
    smoothed_valid = smooth["rates"][0][starts[valid][:, None] + np.arange(30)]
    true_valid = rates[starts[valid][:, None] + np.arange(30)]
    assert by["Gaussian smoothing", "validation"]["r2"] == pytest.approx(
        r2_rates(smoothed_valid, true_valid), rel=1e-6)
    page = write_report(tmp_path / "run").read_text()
    shown = re.search(r"Stretches of the recording \(bins (\d+)-(\d+), (\d+)-(\d+), 1-based", page)
    assert shown and int(shown[2]) - int(shown[1]) + 1 == 90  # three segments of 30 bins
    assert "Inferred inputs (inferred_inputs_continuous) over the stretches" in page
    assert "over the recording's bins (its segments merged)" in page
    # factors: one trajectory (the merged recording, 600 bins) in 20 end-to-end pieces
    assert ("factors_continuous) cut into pieces of 30 bins, PCs over all of it; 20 pieces, "
            "colour = position in the recording; dots mark piece starts") in page
    assert "one recording of 600 bins x 8 neurons, cut into" in page
    assert "every 5th block of one segment to validation" in page and "trials" not in re.sub(
        r"<[^>]+>", " ", page).split("Hyperparameters")[0]

    # Without the data file the report works from the outputs alone: the same "all" score.
    path.rename(tmp_path / "moved.mat")
    rows, _ = metric_rows(gather(Location(tmp_path / "run")))
    by = {(r["method"].split(" (")[0], r["trials"].split(" (")[0]): r for r in rows}
    assert by["LFADS", "all"]["r2"] == pytest.approx(m["r2_rates"], rel=1e-5)
    assert by["LFADS", "all"]["bps"] is None  # no spikes to score
    smoothing = next(r for r in rows if r["method"].startswith("Gaussian smoothing"))
    assert smoothing["trials"].startswith("all (the recording") and "from metrics.json" in \
        smoothing["method"] and smoothing["r2"] == m["r2_smoothing"]
    assert "Stretches of the recording" in write_report(tmp_path / "run").read_text()


def test_stretches_of_a_recording_mark_every_held_out_segment_in_them():
    seg = plan(1000, 100, 20, "", 100)
    starts = list(seg.starts)
    middle = starts.index(400) if 400 in starts else int(np.argmin(np.abs(seg.starts - 400)))
    s = seg.stretch(middle, {middle: "valid", middle + 1: "test", 0: "valid"})
    assert (s.first, s.end) == (seg.starts[middle] - 100, seg.starts[middle] + 200)
    a = int(seg.starts[middle] - s.first)
    nxt = int(seg.starts[middle + 1] - s.first)
    assert s.held_out == ((a, a + 100, "valid"), (nxt, min(nxt + 100, 300), "test"))
    first = seg.stretch(0, {0: "valid"})  # at the start: no bins before it
    assert (first.first, first.end, first.held_out) == (0, 300, ((0, 100, "valid"),))
    last = seg.stretch(len(starts) - 1, {len(starts) - 1: "test"})
    assert (last.first, last.end, last.held_out) == (700, 1000, ((200, 300, "test"),))
    short = plan(150, 100, 20, "", 100)  # shorter than three segments: the whole of it
    whole = short.stretch(1, {1: "valid"})
    assert (whole.first, whole.end, whole.held_out) == (0, 150, ((50, 150, "valid"),))
    x = np.arange(1000)[:, None] * np.ones((1, 3))
    np.testing.assert_array_equal(s.of(x), x[s.first : s.end])
    # drawn: titled by their bins, on their own time axis, held-out segments shaded
    fig = example_traces(np.stack([s.of(x), first.of(x)]), [0, 1], None, None, 10.0, [s, first])
    top = fig.axes[0]
    assert top.get_title() == f"bins {s.first + 1}-{s.end}"
    assert top.get_xlim()[0] < s.first * 10.0 < top.get_xlim()[1]
    assert len(top.patches) == 2  # the validation and the test segment


def test_a_gaussian_recording_with_forward_bins_is_scored_per_segment(tmp_path):
    """Forward bins are unobserved at every segment's end, so merging segments would mix
    observed and unobserved bins: scores stay per segment, and the report (from the outputs'
    forward_bins) shows segments, not stretches."""
    rng = np.random.default_rng(5)
    t = np.arange(400)
    means = np.sin(t[:, None] / 12.0 + np.arange(5)[None, :])
    x = means + 0.3 * rng.normal(size=means.shape)
    ds = from_array(x, truth=means, cfg=DataConfig(segment_bins=40, forward_bins=5))
    y = rng.normal(size=(ds.n_trials, 40, 5))
    assert ds.as_recorded(y) is y
    cfg = tiny_config(epochs=1)  # its data section says nothing of the Dataset's forward bins
    res = api.train(ds, tmp_path / "run", config=cfg, quiet=True)
    with h5py.File(tmp_path / "run/output/lfads_output.h5") as f:  # from Python as in the file
        np.testing.assert_allclose(res.continuous("factors"), f["factors_continuous"][()])
    with pytest.raises(UserInputError, match="unknown output 'rate'; use one of rates"):
        res.continuous("rate")
    with pytest.raises(UserInputError, match="these data have trials"):
        api.TrainResult(None, from_array(np.ones((20, 10, 3))), cfg, {}, {}).continuous()
    with h5py.File(tmp_path / "run/output/lfads_output.h5") as f:
        assert f.attrs["forward_bins"] == 5 and "rates_continuous" in f
    view = gather(Location(tmp_path / "run"))
    assert not view.section("data").get("forward_bins")
    assert recording_segments(view) is None
    page = write_report(tmp_path / "run").read_text()
    assert "Stretches of the recording" not in page and "Validation segments" in page
    assert "data passed from Python" in page and "no longer there" not in page


def test_a_recording_is_deconvolved_whole_and_written_as_one(tmp_path):
    pytest.importorskip("oasis")
    from autolfads.data.deconvolve import deconvolve_traces

    rng = np.random.default_rng(4)
    spikes = rng.poisson(0.1, size=(900, 5))
    kernel = np.exp(-np.arange(60) / 12.0)
    dff = np.stack([np.convolve(s, kernel)[:900] for s in spikes.T], 1)
    dff += rng.normal(0, 0.05, dff.shape)
    scipy.io.savemat(tmp_path / "ca.mat", {"dff": dff.T, "bin_size_ms": 33.3})
    ds = api.deconvolve(tmp_path / "ca.mat", tmp_path / "ev.mat", variable="dff",
                        log=lambda s: None)
    whole = deconvolve_traces(dff[None])[0]  # the recording in one piece
    np.testing.assert_allclose(ds.segments.merge(ds.all_data()), whole, rtol=1e-5, atol=1e-6)
    written = scipy.io.loadmat(tmp_path / "ev.mat")
    assert written["data"].shape == (5, 900) and "train_inds" not in written
    again = load_dataset(tmp_path / "ev.mat")
    np.testing.assert_allclose(again.all_data(), ds.all_data(), rtol=1e-6)
    api.deconvolve(tmp_path / "ca.mat", tmp_path / "ev.h5", variable="dff", log=lambda s: None)
    from_h5 = load_dataset(tmp_path / "ev.h5")  # one recording too, not its segments as trials
    assert from_h5.segments is not None and from_h5.segments.n_bins == 900
    np.testing.assert_allclose(from_h5.all_data(), ds.all_data(), rtol=1e-6)


def test_bad_values_are_placed_in_the_recording_not_in_a_segment():
    x = np.random.default_rng(5).poisson(1.0, size=(20, 1200)).astype(float)  # neurons x time
    x[3, 500] = np.nan
    with pytest.raises(UserInputError, match=re.escape("first nan at index (3, 500)")):
        from_array(x, layout="neurons_time")
    with pytest.raises(UserInputError, match=re.escape("shape (21, 1200) does not match the "
                                                       "data's (20, 1200)")):
        from_array(np.nan_to_num(x), layout="neurons_time", truth=np.ones((21, 1200)))
    truth = np.ones((20, 1200))
    truth[7, 1234 - 1000] = np.inf
    with pytest.raises(UserInputError, match=re.escape("'truth': 1 NaN/Inf value(s), first inf "
                                                       "at index (7, 234)")):
        from_array(np.nan_to_num(x), layout="neurons_time", truth=truth)
    behavior = np.zeros((1200, 2))
    behavior[100, 1] = np.nan
    with pytest.raises(UserInputError, match=re.escape("first nan at index (100, 1)")):
        from_array(np.nan_to_num(x), layout="neurons_time", behavior=behavior)


def test_too_few_segments_says_whether_validation_or_test_took_them():
    x = np.random.default_rng(7).poisson(1.0, size=(2000, 6)).astype(float)  # time x neurons
    with pytest.raises(UserInputError, match=r"none to validate: data.valid_every=50 is more "
                                             r"than its 20 blocks.*use a smaller"):
        from_array(x, cfg=DataConfig(valid_every=50))
    with pytest.raises(UserInputError, match=r"12 segments of 100 bins \(3 of them test "
                                             r"segments\); LFADS needs at least 10"):
        from_array(x[:1000], cfg=DataConfig(split="random", test_fraction=0.3))


def test_few_validation_segments_are_named_as_segments():
    x = np.random.default_rng(8).poisson(1.0, size=(1000, 6)).astype(float)  # 10 blocks
    few = from_array(x)
    assert len(few.valid_inds) == 2
    said = [w for w in few.meta["warnings"] if "2 validation segment(s)" in w]
    assert len(said) == 1 and "a longer recording" in said[0] and "valid_inds" not in said[0]


def test_segment_settings_on_trial_data_are_said_to_be_unused():
    ds = from_array(np.ones((20, 10, 4)), cfg=DataConfig(segment_bins=5))
    assert ds.segments is None and ds.n_trials == 20
    assert any("these data have trials, used as they are" in w for w in ds.meta["warnings"])


def test_the_segment_count_decides_not_the_block_count():
    """10 blocks, 2 of them test: the 8 left make 11 segments with overlap, enough to train."""
    x = np.random.default_rng(7).poisson(1.0, size=(1000, 4)).astype(float)
    ds = from_array(x, cfg=DataConfig(segment_bins=100, segment_overlap=50, test_every=5))
    assert len(ds.test_inds) == 2 and len(ds.train_inds) + len(ds.valid_inds) >= 10


def test_a_suggested_segment_length_works_with_the_overlap_given():
    x = np.random.default_rng(7).poisson(1.0, size=(400, 4)).astype(float)
    cfg = DataConfig(segment_bins=100, segment_overlap=60)
    with pytest.raises(UserInputError, match=r"--set data.segment_bins=(\d+)\)") as info:
        from_array(x, cfg=cfg)
    suggested = int(re.search(r"segment_bins=(\d+)\)", str(info.value)).group(1))
    assert suggested > 60
    assert from_array(x, cfg=cfg.model_copy(update={"segment_bins": suggested})).n_trials >= 10


@pytest.mark.parametrize("suffix", [".mat", ".h5"])
def test_a_deconvolved_files_truth_stays_in_other_units_when_read_again(tmp_path, suffix):
    """`autolfads deconvolve` writes events beside spike rates: read back, only scale-free
    comparisons with that truth are made (no 1 - SSE/SST of events against rates)."""
    from autolfads.data.writers import write_dataset

    rng = np.random.default_rng(6)
    rates = rng.uniform(1.0, 3.0, size=(1500, 4))  # on the data's scale (mean 2)
    recording = from_array(rng.gamma(2.0, 1.0, rates.shape), truth=rates)
    trials = from_array(rng.gamma(2.0, 1.0, (30, 20, 4)), truth=rng.uniform(1, 3, (30, 20, 4)))
    for name, ds in (("rec", recording), ("trials", trials)):
        plain = load_dataset(write_dataset(tmp_path / f"{name}{suffix}", ds))
        assert not plain.meta.get("truth_scale_free")
        ds.meta["truth_scale_free"] = True  # as deconvolve_dataset marks it
        back = load_dataset(write_dataset(tmp_path / f"{name}_ev{suffix}", ds))
        assert back.meta.get("truth_scale_free") is True and back.has_truth


def test_a_recording_is_cut_end_to_end_into_pieces_for_its_factor_figure():
    x = np.arange(23 * 2).reshape(23, 2)
    pieces = recording_pieces(x, 5)
    assert pieces.shape == (4, 5, 2)  # the last 3 bins dropped
    np.testing.assert_array_equal(pieces.reshape(-1, 2), x[:20])
    assert recording_pieces(x, 50).shape == (1, 23, 2)  # shorter than one piece: all of it
