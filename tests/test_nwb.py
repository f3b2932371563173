"""NWB input: files written here with pynwb itself (nothing downloaded), read back to the same
counts as binning by hand; bad NWB files give one error line."""

import datetime
import re

import numpy as np
import pytest
from conftest import run_cli

from autolfads.config import DataConfig
from autolfads.data.io import load_dataset
from autolfads.errors import UserInputError

pynwb = pytest.importorskip("pynwb")

N_UNITS, N_TRIALS = 6, 20


def write_nwb(path, units=True, trials=True, behavior=True, seed=0, nlb=False,
              behavior_from=0.0):
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    rng = np.random.default_rng(seed)
    nwb = NWBFile(session_description="test", identifier="t",
                  session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    starts = 1.0 + np.arange(N_TRIALS) * 1.5  # 1 s trials, 0.5 s apart
    if trials:
        nwb.add_trial_column("move_onset_time", "movement onset")
        nwb.add_trial_column("reach", "reach direction")
        if nlb:  # as the Neural Latents Benchmark's files: a split per trial
            nwb.add_trial_column("split", "train / val / test")
        for k, t0 in enumerate(starts):
            extra = {"split": ["train", "train", "val", "test"][k % 4]} if nlb else {}
            nwb.add_trial(start_time=t0, stop_time=t0 + 1.0, move_onset_time=t0 + 0.3,
                          reach=k % 4, **extra)
    spikes = [np.sort(rng.uniform(0, starts[-1] + 1.2, size=rng.integers(200, 400)))
              for _ in range(N_UNITS)]
    if units:
        if nlb:  # and held-out units marked in the units table
            nwb.add_unit_column("heldout", "held out for co-bps")
        for n, s in enumerate(spikes):
            nwb.add_unit(spike_times=s, **({"heldout": n in (1, 4)} if nlb else {}))
    if behavior:
        t = np.arange(behavior_from, starts[-1] + 1.2, 0.001)
        vel = np.stack([np.sin(t), np.cos(3 * t)], axis=1)
        nwb.add_acquisition(TimeSeries(name="hand_vel", data=vel, unit="m/s", rate=1000.0,
                                       starting_time=behavior_from))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return spikes, starts


def test_nwb_round_trips_to_the_counts_binned_by_hand(tmp_path):
    path = tmp_path / "s.nwb"
    spikes, starts = write_nwb(path)
    cfg = DataConfig(align="move_onset_time", window_ms=[-200, 500], bin_size_ms=20,
                     condition="reach", behavior="hand_vel")
    ds = load_dataset(path, cfg)
    assert (ds.n_trials, ds.n_time, ds.n_neurons) == (N_TRIALS, 35, N_UNITS)
    assert ds.bin_size_s == pytest.approx(0.02)
    x = ds.all_data()
    for k in (0, 7, 19):
        edges = starts[k] + 0.3 - 0.2 + 0.02 * np.arange(36)
        for n in range(N_UNITS):
            np.testing.assert_array_equal(x[k, :, n], np.histogram(spikes[n], bins=edges)[0])
    np.testing.assert_array_equal(ds.conditions, np.arange(N_TRIALS) % 4)
    # Decode targets: the mean of the 1 kHz samples in each bin (trial 3's first bin here).
    t = np.arange(0.0, starts[-1] + 1.2, 0.001)
    first = starts[3] + 0.3 - 0.2
    in_bin = t[(t >= first - 1e-9) & (t < first + 0.02 - 1e-9)]
    np.testing.assert_allclose(ds.behavior[3, 0], [np.sin(in_bin).mean(),
                                                   np.cos(3 * in_bin).mean()], atol=1e-5)
    default = load_dataset(path)  # start_time .. shortest trial, 10 ms bins
    assert default.n_time == 100


def test_nlb_nwb_files_work_as_they_are(tmp_path):
    path = tmp_path / "nlb.nwb"
    write_nwb(path, nlb=True)
    ds = load_dataset(path, DataConfig(forward_bins=10))
    assert list(ds.heldout_neurons) == [1, 4]
    np.testing.assert_array_equal(ds.valid_inds, np.arange(2, N_TRIALS, 4))
    np.testing.assert_array_equal(ds.test_inds, np.arange(3, N_TRIALS, 4))
    assert len(ds.train_inds) == N_TRIALS // 2 and ds.forward_bins == 10
    mine = load_dataset(path, DataConfig(heldout_neurons=[0]))  # an explicit choice wins
    assert list(mine.heldout_neurons) == [0]


@pytest.mark.parametrize("kind,words", [
    ("no_units", ["no units table"]),
    ("outside", ["outside the session", "data.window_ms"]),
    ("bad_align", ["no column 'go_cue'", "data.align"]),
])
def test_bad_nwb_is_one_error_line(kind, words, tmp_path, monkeypatch, capsys):
    path = tmp_path / "bad.nwb"
    write_nwb(path, units=kind != "no_units")
    extra = {"outside": ["--set", "data.window_ms=[-2000,500]"],
             "bad_align": ["--set", "data.align=go_cue"]}.get(kind, [])
    code, _, err = run_cli(monkeypatch, capsys, "train", path, "--out", tmp_path / "run",
                           "--epochs", "1", *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "run").exists()


def write_dandi_like(path, clock=0.0, none_split=False, short_unit=False, aborted=False,
                     quality=False):
    """A DANDI-like session: trials of different lengths with a movement onset (NaN in one when
    asked), hand position inside a Position container in two modules, units with
    obs_intervals, and a session clock that may not start at 0."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.behavior import Position, SpatialSeries

    rng = np.random.default_rng(3)
    nwb = NWBFile(session_description="dandi-like", identifier="d",
                  session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    nwb.add_trial_column("move_onset_time", "movement onset")
    nwb.add_trial_column("split", "train / val / test / none")
    starts = clock + 1.0 + np.arange(N_TRIALS) * 2.0
    lengths = 1.0 + 0.05 * (np.arange(N_TRIALS) % 5)  # 1.0 .. 1.2 s
    if aborted:
        lengths[7] = 0.03
    for k, t0 in enumerate(starts):
        split = "none" if none_split and k in (5, 6) else ["train", "train", "val", "test"][k % 4]
        nwb.add_trial(start_time=t0, stop_time=t0 + lengths[k], move_onset_time=t0 + 0.4,
                      split=split)
    end = starts[-1] + 2.0
    nwb.add_unit_column("obs_intervals", "when each unit was recorded", index=True)
    if quality:  # as a curated (Phy, Kilosort) session
        nwb.add_unit_column("quality", "curation label")
    for n in range(N_UNITS):
        until = starts[10] if short_unit and n == 2 else end
        label = {"quality": ["good", "noise", "mua"][n % 3]} if quality else {}
        nwb.add_unit(spike_times=np.sort(rng.uniform(clock, until, 300)),
                     obs_intervals=[[clock, until]], **label)
    t = np.arange(clock, end, 0.01)
    for module in ("behavior", "behavior_filtered"):
        pos = Position(spatial_series=SpatialSeries(
            name="hand_pos", data=np.stack([np.sin(t), np.cos(t)], 1), timestamps=t,
            reference_frame="screen"))
        nwb.create_processing_module(module, "hand").add(pos)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return starts


def test_dandi_like_sessions_are_read_as_a_scientist_means(tmp_path):
    path = tmp_path / "d.nwb"
    starts = write_dandi_like(path, clock=5000.0, none_split=True, short_unit=True)
    # data.align alone: from each movement onset to the shortest trial's end (0.6 s = 60 bins).
    ds = load_dataset(path, DataConfig(align="move_onset_time",
                                       behavior="behavior_filtered/Position/hand_pos"))
    assert ds.n_trials == N_TRIALS - 2 and ds.n_time == 60  # 'none' trials left out
    said = " ".join(ds.meta["warnings"])
    assert "2 trial(s) whose split is 'none' are left out" in said
    assert "unit(s) 2 (0-based) were not recorded during all of the trial windows" in said
    kept = np.delete(starts, [5, 6])
    t = kept[0] + 0.4 + 0.005  # the first bin's centre after trial 0's movement onset
    np.testing.assert_allclose(ds.behavior[0, 0], [np.sin(t), np.cos(t)], atol=1e-3)
    # The clock starts at 5000 s: a window before the first event is outside the session.
    with pytest.raises(UserInputError, match="outside the session .5000"):
        load_dataset(path, DataConfig(window_ms=[-3000, 500]))
    for name, words in (("hand_pos", "matches 2 time series: behavior/Position/hand_pos, "
                                      "behavior_filtered/Position/hand_pos"),
                        ("hand_speed", "no time series 'hand_speed' (data.behavior); the file "
                                       "has: behavior/Position/hand_pos")):
        with pytest.raises(UserInputError, match=re.escape(words)):
            load_dataset(path, DataConfig(behavior=name))


def test_trials_that_cannot_set_a_window_are_named(tmp_path):
    path = tmp_path / "a.nwb"
    write_dandi_like(path, aborted=True)
    words = "trial 7 (0-based) ends 30 ms after its start_time, and the shortest trial sets"
    with pytest.raises(UserInputError, match=re.escape(words)):
        load_dataset(path)
    ds = load_dataset(path, DataConfig(window_ms=[0, 500]))  # an explicit window: fine
    assert ds.n_time == 50


def test_curated_units_can_be_chosen_and_noise_units_are_pointed_out(tmp_path):
    path = tmp_path / "q.nwb"
    write_dandi_like(path, quality=True)
    ds = load_dataset(path)
    assert ds.n_neurons == N_UNITS and any(
        "quality column marks 2 of 6 unit(s) as noise; all units are read (keep some with "
        "--set data.units=quality=good)" in w for w in ds.meta["warnings"])
    good = load_dataset(path, DataConfig(units="quality=Good,MUA"))  # as people type it
    assert good.n_neurons == 4 and any("4 of 6 units read" in w for w in good.meta["warnings"])
    np.testing.assert_array_equal(good.all_data()[..., 1], ds.all_data()[..., 2])  # unit 2
    for rule, words in (("KSLabel=good", "no column 'KSLabel'"),
                        ("quality=great", "no unit has quality = great (data.units); its values: "
                                          "good, mua, noise"),
                        ("quality", "expected COLUMN=VALUE")):
        with pytest.raises(UserInputError, match=re.escape(words)):
            load_dataset(path, DataConfig(units=rule))


def imaging(nwb, n_rois: int):
    """An imaging plane with n_rois ROIs, segmented in an `ophys` module: (module, ROIs)."""
    from pynwb.ophys import ImageSegmentation, OpticalChannel

    channel = OpticalChannel(name="c", description="green", emission_lambda=510.0)
    plane = nwb.create_imaging_plane(name="plane", optical_channel=channel, description="d",
                                     device=nwb.create_device("scope"), excitation_lambda=920.0,
                                     imaging_rate=30.0, indicator="GCaMP6f", location="V1")
    seg = ImageSegmentation()
    rois = seg.create_plane_segmentation("rois", plane, name="PlaneSegmentation")
    for _ in range(n_rois):
        rois.add_roi(image_mask=np.ones((4, 4)))
    ophys = nwb.create_processing_module("ophys", "calcium")
    ophys.add(seg)
    return ophys, rois


def test_a_recorded_signal_and_another_intervals_table_can_be_the_data(tmp_path, monkeypatch):
    """Calcium dF/F (an RoiResponseSeries) binned as the data, trials from an `epochs` table."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import DfOverF, RoiResponseSeries

    nwb = NWBFile(session_description="ophys", identifier="o",
                  session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    for k in range(N_TRIALS):
        nwb.add_epoch(start_time=1.0 + 2.0 * k, stop_time=2.0 + 2.0 * k)
    ophys, rois = imaging(nwb, 5)
    t = np.arange(0, 2.0 * N_TRIALS + 2.0, 1 / 30.0)
    dff = np.abs(np.sin(np.outer(t, np.arange(1, 6)))).astype(np.float32)
    dff[40, 0] = np.nan  # a dropped frame (t = 1.33 s, in trial 0's fourth 100 ms bin)
    region = rois.create_roi_table_region("all", list(range(5)))
    ophys.add(DfOverF(RoiResponseSeries(name="dff", data=dff, rois=region, unit="",
                                        rate=30.0, starting_time=0.0)))
    path = tmp_path / "ophys.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    words = ("no units table (spike times); autolfads reads spiking data from NWB's units "
             "table (the file has time series: ophys/DfOverF/dff; to bin one as the data: "
             "--set data.signal=ophys/DfOverF/dff")
    with pytest.raises(UserInputError, match=re.escape(words)):
        load_dataset(path)
    whole = load_dataset(path, DataConfig(signal="dff", bin_size_ms=100, segment_bins=20))
    assert whole.segments.n_bins == int((t[-1] - t[0]) / 0.1)  # the session, in whole bins
    from autolfads.data import nwb_series

    monkeypatch.setattr(nwb_series, "READ_VALUES", 100)  # read a few bins at a time: the same
    np.testing.assert_array_equal(load_dataset(path, DataConfig(
        signal="dff", bin_size_ms=100, segment_bins=20)).all_data(), whole.all_data())
    assert any("no trials table: the session is read as one continuous recording (the file has "
               "other intervals: epochs; choose one with --set data.intervals=epochs)" in w
               for w in whole.meta["warnings"])
    ds = load_dataset(path, DataConfig(signal="dff", intervals="epochs", bin_size_ms=100))
    assert (ds.n_trials, ds.n_time, ds.n_neurons) == (N_TRIALS, 10, 5)
    # Each bin is the mean of its frames: trial 0, bin 0 = frames in [1.0, 1.1) s.
    frames = (t >= 1.0 - 1e-9) & (t < 1.1 - 1e-9)
    np.testing.assert_allclose(ds.all_data()[0, 0], dff[frames].mean(0), rtol=1e-5)
    frames = (t >= 1.3 - 1e-9) & (t < 1.4 - 1e-9)  # the dropped frame is left out of its bin
    np.testing.assert_allclose(ds.all_data()[0, 3], np.nanmean(dff[frames], 0), rtol=1e-5)
    assert np.isfinite(ds.all_data()).all()
    fine = load_dataset(path, DataConfig(signal="dff", intervals="epochs"))  # 10 ms bins
    assert any("a sample every 33 ms, fewer than one per 10 ms bin" in w
               for w in fine.meta["warnings"])


def test_a_session_without_trials_is_one_recording_in_segments(tmp_path):
    """No trials table: the units' spikes are binned from the first spike to the last, as one
    recording cut into segments; behaviour is resampled over the same bins; settings that need
    trials say so."""
    path = tmp_path / "spont.nwb"
    spikes, _ = write_nwb(path, trials=False, behavior_from=2.0)
    cfg = DataConfig(bin_size_ms=20, behavior="hand_vel", segment_bins=40, segment_overlap=8)
    ds = load_dataset(path, cfg)
    # behaviour starts at 2 s, after the first spike: the recording is read where both are
    first = 2.0
    n_bins = int((max(s[-1] for s in spikes) - first) / 0.02)
    assert any("data.behavior=hand_vel covers 2.000 to" in w for w in ds.meta["warnings"])
    edges = first + 0.02 * np.arange(n_bins + 1)
    by_hand = np.stack([np.histogram(s, edges)[0] for s in spikes], axis=1)
    assert ds.segments.n_bins == n_bins and ds.n_time == 40
    np.testing.assert_array_equal(ds.segments.merge(ds.all_data()), by_hand)
    t = np.arange(2.0, max(s[-1] for s in spikes) + 1.2, 0.001)  # the 1 kHz samples
    means = [np.sin(t[(t >= a - 1e-9) & (t < b - 1e-9)]).mean()
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    np.testing.assert_allclose(ds.segments.merge(ds.behavior)[:, 0], means, atol=1e-5)
    with pytest.raises(UserInputError, match="data.condition=reach names a trials column"):
        load_dataset(path, DataConfig(condition="reach"))
    said = load_dataset(path, DataConfig(window_ms=[-200, 500], align="go"))
    for key in ("window_ms", "align"):
        assert any(f"data.{key} is for trials; the session has none, so it is ignored" in w
                   for w in said.meta["warnings"])
    with pytest.raises(UserInputError, match=re.escape("no epochs table")):
        load_dataset(path, DataConfig(intervals="epochs"))



def test_a_window_that_is_not_whole_bins_is_said(tmp_path):
    path = tmp_path / "s.nwb"
    write_nwb(path)
    ds = load_dataset(path, DataConfig(window_ms=[0, 705], bin_size_ms=20))
    assert ds.n_time == 35
    assert any("the window (0 to 705 ms) is not a whole number of 20 ms bins; read as 0 to 700 "
               "ms (35 bins)" in w for w in ds.meta["warnings"])
    whole = load_dataset(path, DataConfig(window_ms=[-200, 500], bin_size_ms=20))
    assert not any("whole number" in w for w in whole.meta["warnings"])
