"""NWB files as labs export them, oddities included (from an audit of ~30 such files): padding
in spike times, times in the wrong unit, event columns relative to each trial, a lab's own
`split` and text `heldout` columns, channels x time series, raw recordings only."""

import datetime
import re

import numpy as np
import pytest

from autolfads.config import DataConfig
from autolfads.data.io import load_dataset
from autolfads.errors import UserInputError

pynwb = pytest.importorskip("pynwb")

N_UNITS, N_TRIALS = 5, 12


def session(path, *, trials=True, spike_scale=1.0, nan_unit=None, onset_offsets=False,
            split=None, heldout=None, obs_intervals=None, lengths=None, spike_times=True,
            pupil_gap=None, reach_nan=None, nan_stamp=False):
    """Trials 1 s long every 1.5 s from 1 s, a move_onset 0.4 s into each (a session time, or
    an offset from the trial's start), units firing throughout; returns the spikes (s)."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    rng = np.random.default_rng(0)
    nwb = NWBFile(session_description="odd", identifier="o",
                  session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    starts = 1.0 + 1.5 * np.arange(N_TRIALS)
    lengths = np.ones(N_TRIALS) if lengths is None else np.asarray(lengths)
    if trials:
        nwb.add_trial_column("move_onset", "movement onset")
        nwb.add_trial_column("reach", "reach direction")
        if split is not None:
            nwb.add_trial_column("split", "the lab's own column")
        for k, t0 in enumerate(starts):
            extra = {"split": split[k % len(split)]} if split is not None else {}
            nwb.add_trial(start_time=t0, stop_time=t0 + lengths[k],
                          move_onset=0.4 if onset_offsets else t0 + 0.4,
                          reach=np.nan if k == reach_nan else float(k % 4), **extra)
    spikes = [np.sort(rng.uniform(0.0, starts[-1] + 1.2, 300)) for _ in range(N_UNITS)]
    if heldout is not None:
        nwb.add_unit_column("heldout", "held out")
    for n, s in enumerate(spikes):
        kw = {}
        if spike_times:
            t = s * spike_scale
            kw["spike_times"] = np.r_[t, np.nan] if n == nan_unit else t
        if heldout is not None:
            kw["heldout"] = heldout[n]
        if obs_intervals is not None:
            kw["obs_intervals"] = obs_intervals
        nwb.add_unit(**kw)
    if pupil_gap is not None:  # a pupil trace at 100 Hz with a tracking dropout (NaN)
        t = np.arange(0.0, starts[-1] + 1.2, 0.01)
        pupil = 2.0 + t / 10.0
        pupil[(t >= pupil_gap[0]) & (t < pupil_gap[1])] = np.nan
        stamps = t.copy()
        if nan_stamp:
            stamps[5] = np.nan
        nwb.add_acquisition(TimeSeries(name="pupil", data=pupil, unit="mm", timestamps=stamps))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return spikes


def said(ds, words: str) -> list[str]:
    return [w for w in ds.meta["warnings"] if words in w]


def test_nan_padding_in_spike_times_is_left_out_and_said(tmp_path):
    path = tmp_path / "nan.nwb"
    spikes = session(path, nan_unit=1)
    ds = load_dataset(path, DataConfig(window_ms=[0, 1000], bin_size_ms=20))
    assert said(ds, "unit(s) 1 (0-based) have 1 spike time(s) that are NaN or infinite")
    edges = 1.0 + 0.02 * np.arange(51)
    np.testing.assert_array_equal(ds.all_data()[0, :, 1], np.histogram(spikes[1], edges)[0])
    # The session still ends at the last real spike: a window past it is an error.
    with pytest.raises(UserInputError, match="outside the session"):
        load_dataset(path, DataConfig(window_ms=[0, 8000]))
    path = tmp_path / "nan_session.nwb"
    session(path, trials=False, nan_unit=0)
    assert said(load_dataset(path), "have 1 spike time(s) that are NaN")  # was a traceback
    path = tmp_path / "no_times.nwb"
    session(path, spike_times=False, obs_intervals=[[0.0, 20.0]])
    with pytest.raises(UserInputError, match="the units table has no spike_times column"):
        load_dataset(path)


def test_spike_times_in_ms_beside_trials_in_seconds_are_questioned(tmp_path):
    path = tmp_path / "ms.nwb"
    session(path, spike_scale=1000.0)
    (w,) = said(load_dataset(path), "are the spike times in ms? NWB keeps times in seconds")
    assert "run to 18690.7 s but the trials end at 18.5 s, and 0.2% of the spikes" in w
    session(path, spike_scale=1.0)
    assert not said(load_dataset(path), "in ms?")
    session(path, spike_scale=30.0)  # a task, then a long spontaneous stretch: many inside
    assert not said(load_dataset(path), "in ms?")


def test_an_event_column_of_offsets_from_each_trial_start_is_read_as_such(tmp_path):
    absolute, offsets = tmp_path / "abs.nwb", tmp_path / "off.nwb"
    session(absolute)
    session(offsets, onset_offsets=True)
    cfg = DataConfig(align="move_onset", window_ms=[-200, 500], bin_size_ms=20)
    want, got = load_dataset(absolute, cfg), load_dataset(offsets, cfg)
    np.testing.assert_array_equal(got.all_data(), want.all_data())
    assert not said(want, "trial's start")
    (w,) = said(got, "holds times from each trial's start, not from the session's")
    assert "trial 0: move_onset 0.400 s, the trial runs 1.000 to 2.000 s" in w


def test_a_labs_own_split_column_and_text_heldout_flags(tmp_path):
    path = tmp_path / "own.nwb"
    session(path, split=["first", "second"], heldout=["no", "yes", "No", "TRUE", "0"])
    ds = load_dataset(path)
    assert said(ds, "the trials' split column holds first, second, not NLB's")
    assert ds.n_trials == N_TRIALS and len(ds.valid_inds)  # split as data.split says
    assert list(ds.heldout_neurons) == [1, 3]
    session(path, heldout=["no", "maybe", "no", "no", "no"])
    with pytest.raises(UserInputError, match=re.escape("heldout column holds 'maybe'")):
        load_dataset(path)


def test_observation_intervals_that_touch_cover_the_trials_between_them(tmp_path):
    path = tmp_path / "iv.nwb"
    session(path, obs_intervals=[[0.0, 9.0], [9.0, 30.0]])  # trial 5 runs 8.5 to 9.5 s
    assert not said(load_dataset(path), "not recorded during")
    session(path, obs_intervals=[[0.0, 9.0], [9.2, 30.0]])
    assert said(load_dataset(path), "unit(s) 0, 1, 2, 3, 4 (0-based) were not recorded")


def test_a_short_trial_that_sets_the_default_window_is_said(tmp_path):
    path = tmp_path / "short.nwb"
    lengths = np.ones(N_TRIALS)
    lengths[4] = 0.3
    session(path, lengths=lengths)
    ds = load_dataset(path)
    assert ds.n_time == 30
    assert said(ds, "to the end of the shortest trial, 300 ms (trial 4, 0-based; the median "
                    "trial lasts 1000 ms), so every trial is cut there")
    session(path)
    assert not said(load_dataset(path), "shortest trial")


def test_a_series_stored_channels_by_time_is_read_transposed(tmp_path):
    """pynwb only warns of a RoiResponseSeries written ROIs x time; read as written it would be
    thousands of channels of a few bins each."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import RoiResponseSeries
    from test_nwb import imaging

    nwb = NWBFile(session_description="t", identifier="t",
                  session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    ophys, rois = imaging(nwb, 4)
    t = np.arange(0, 60.0, 1 / 30.0)
    dff = np.abs(np.sin(np.outer(t, np.arange(1, 5)))).astype(np.float32)  # time x ROIs
    region = rois.create_roi_table_region("all", list(range(4)))
    with pytest.warns(UserWarning):  # pynwb: "... may be transposed"
        ophys.add(RoiResponseSeries(name="dff", data=dff.T.copy(), rois=region, unit="",
                                    rate=30.0))
    path = tmp_path / "rois_by_time.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    ds = load_dataset(path, DataConfig(signal="dff", bin_size_ms=100, segment_bins=50))
    assert ds.n_neurons == 4 and ds.segments.n_bins == int(t[-1] / 0.1)
    assert said(ds, "data.signal=dff is stored as channels x time (4 x 1800); NWB's order is "
                    "time x channels: read transposed")
    first_bin = dff[(t >= 0) & (t < 0.1 - 1e-9)].mean(0)
    np.testing.assert_allclose(ds.segments.merge(ds.all_data())[0], first_bin, rtol=1e-5)


def test_a_raw_recording_alone_asks_for_spike_sorting(tmp_path):
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectricalSeries

    nwb = NWBFile(session_description="raw", identifier="r",
                  session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    group = nwb.create_electrode_group("g", "probe", "CA1", nwb.create_device("probe"))
    for _ in range(4):
        nwb.add_electrode(group=group, location="CA1")
    region = nwb.create_electrode_table_region(list(range(4)), "all")
    nwb.add_acquisition(ElectricalSeries(name="raw", data=np.zeros((3000, 4), np.int16),
                                         electrodes=region, rate=30000.0))
    path = tmp_path / "raw.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    with pytest.raises(UserInputError, match="holds a raw recording: acquisition/raw; sort its "
                                             "spikes first"):
        load_dataset(path)


def test_the_outputs_say_which_of_the_files_trials_and_units_they_hold(tmp_path):
    """Trials left out (NLB's 'none'), units not chosen (data.units), a session's start: the
    outputs name the file's rows (0-based in .h5, 1-based in .mat) and the recording's start."""
    from test_nwb import write_dandi_like

    from autolfads.rundir.outputs import matlab_dict, outputs_of

    path = tmp_path / "d.nwb"
    write_dandi_like(path, none_split=True, quality=True)  # trials 5, 6: 'none'
    ds = load_dataset(path, DataConfig(units="quality=good,mua"))  # units 0, 2, 3, 5
    out = outputs_of(ds, posterior(ds))
    np.testing.assert_array_equal(out.arrays["source_trials"], np.delete(np.arange(20), [5, 6]))
    np.testing.assert_array_equal(out.arrays["source_units"], [0, 2, 3, 5])
    mat = matlab_dict(out)
    np.testing.assert_array_equal(np.ravel(mat["source_units"]), [1, 3, 4, 6])
    assert "recording_start_s" not in out.attrs
    path = tmp_path / "s.nwb"
    spikes = session(path, trials=False)
    rec = load_dataset(path, DataConfig(segment_bins=50))
    out = outputs_of(rec, posterior(rec))
    assert out.attrs["recording_start_s"] == min(s[0] for s in spikes)
    assert "source_trials" not in out.arrays and "source_units" not in out.arrays
    assert matlab_dict(out)["recording_start_s"] == out.attrs["recording_start_s"]


def posterior(ds) -> dict[str, np.ndarray]:
    """Outputs of the right shapes for every split (their values do not matter here)."""
    post = {}
    for sp in ds.splits:
        n = len(getattr(ds, f"{sp}_inds"))
        post.update({f"{sp}_rates": np.ones((n, ds.n_time, ds.n_neurons)),
                     f"{sp}_factors": np.ones((n, ds.n_time, 3)),
                     f"{sp}_inferred_inputs": np.ones((n, ds.n_time, 1)),
                     f"{sp}_ic_mean": np.ones((n, 4))})
    return post


def test_dropouts_in_behaviour_are_bridged_and_missing_labels_named(tmp_path):
    path = tmp_path / "pupil.nwb"
    session(path, pupil_gap=(2.2, 2.5), reach_nan=3)
    ds = load_dataset(path, DataConfig(behavior="pupil", bin_size_ms=20))
    (w,) = said(ds, "data.behavior=pupil has 30 sample(s) that are NaN (dropouts), the longest "
                    "run 0.3 s: bridged")
    centre = 1.0 + 0.01 + 0.02 * np.arange(50)  # trial 0: its bins' centres, inside the gap too
    np.testing.assert_allclose(ds.behavior[0, :, 0], 2.0 + centre / 10.0, atol=1e-6)
    with pytest.raises(UserInputError, match=re.escape(
            "1 trial(s) have no reach (NaN): trials 3 (0-based); choose another data.condition "
            "column, or leave it out")):
        load_dataset(path, DataConfig(condition="reach"))
    session(path, pupil_gap=(2.2, 2.5), nan_stamp=True)
    with pytest.raises(UserInputError,
                       match="data.behavior=pupil: 1 of its 1870 timestamps are NaN"):
        load_dataset(path, DataConfig(behavior="pupil"))
