"""`autolfads report`: every section present, every image it references a valid PNG, no network,
and graceful pages for live runs, train-only runs and runs without true rates."""

import json
import re
import tempfile
from html.parser import HTMLParser

import pytest
from conftest import run_cli
from fake_run import HP_NAMES, make_run

from autolfads.analysis import plots
from autolfads.analysis.report import SECTIONS, write_report
from autolfads.rundir.location import Location
from autolfads.rundir.pbt_log import read_decisions, read_hp_log

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.srcs, self.hrefs = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key, store in (("src", self.srcs), ("href", self.hrefs)):
            if key in a:
                store.append(a[key])


def check_page(index):
    """Sections present, every referenced image a readable PNG beside the page, nothing remote."""
    text = index.read_text()
    refs = _Refs()
    refs.feed(text)
    assert {sid for sid, _ in SECTIONS} <= refs.ids
    assert not re.search(r"(?i)(https?:)?//[a-z0-9]", " ".join(refs.srcs + refs.hrefs))
    assert "<script" not in text and "@import" not in text and "url(" not in text
    import matplotlib.image
    from PIL import Image

    for src in refs.srcs:
        path = index.parent / src
        assert path.is_file() and path.parent == index.parent, src
        assert path.read_bytes()[:8] == PNG_SIGNATURE, src
        with Image.open(path) as im:
            im.verify()
        assert matplotlib.image.imread(path).ndim == 3
    assert all(h.startswith("#") for h in refs.hrefs)
    return text, {s.removesuffix(".png") for s in refs.srcs}


def test_report_of_a_finished_run_has_every_section_and_figure(tmp_path):
    run = make_run(tmp_path)
    index = write_report(run)
    assert index == run / "report" / "index.html"
    text, images = check_page(index)
    assert images == {"hyperparameters", "scores", "trials", "factors", "inputs",
                      "rates_vs_truth"}
    assert "finished" in text and 'http-equiv="refresh"' not in text  # nothing left to watch
    assert "40 trials x 15 bins x 8 neurons" in text and "32 train / 8 validation" in text
    assert "10 ms" in text and "3 workers" in text and "best worker" in text
    assert "spikes not shown" not in text  # data found through run.json
    assert "Gaussian smoothing (sigma" in text and "bits/spike" in text
    assert "4 condition averages" in text  # conditions known: coloured by condition
    for name in HP_NAMES:
        assert name in text  # best worker's hyperparameters
    # only the page's own files: temp files gone, permissions readable by others
    names = sorted(p.name for p in index.parent.iterdir())
    assert names == sorted(["index.html", *(f"{i}.png" for i in images)])
    assert index.stat().st_mode & 0o044 == 0o044


def test_a_truth_that_varies_only_between_channels_gets_no_r2_in_the_report(tmp_path):
    """metrics.json leaves R^2 out for such a truth (data/content.py); the report's table and
    scatter do too, and say why."""
    run = make_run(tmp_path)
    m = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps(  # as results.compute_metrics writes it
        {**{k: v for k, v in m.items() if not k.startswith(("r2", "smoothing"))},
         "truth_flat": 1.0}))
    text, images = check_page(write_report(run))
    assert "rates_vs_truth" not in images and "trials" in images
    assert "vary only between neurons" in text and "R^2 against them" in text
    assert "no true rates in the data" not in text


def test_hyperparameter_axes_are_logarithmic_where_the_range_is(tmp_path):
    run = make_run(tmp_path, generations=4)
    rd = Location(run)
    log = read_hp_log(rd)
    from autolfads.analysis.report import _is_log, _space
    from autolfads.analysis.report_data import gather

    view = gather(rd)
    scale = {n: _is_log(n, _space(view), view) for n in log.names}
    assert scale == {"lr": True, "dropout_rate": False, "cd_rate": False, "kl_ic_scale": True,
                     "kl_co_scale": True, "l2_gen_scale": True, "l2_con_scale": True}
    fig = plots.population_evolution(log, read_decisions(rd), log.names, scale)
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}
    assert axes["kl_ic_scale"].get_yscale() == "log"
    assert axes["dropout_rate"].get_yscale() == "linear"
    # 3 exploits (one per generation but the last), each a dashed segment in every panel
    dashed = [ln for ln in axes["cd_rate"].get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 3


def test_train_only_run_without_truth(tmp_path):
    run = make_run(tmp_path, pbt=False, truth=False, bin_size_s=None, conditions=False,
                   co_dim=0)
    text, images = check_page(write_report(run))
    assert images == {"training", "trials", "factors"}
    assert "single LFADS model" in text and "no population" in text
    assert "no true rates" in text and "spikes/bin" in text
    assert "single trials (conditions unknown)" in text
    assert "co_dim = 0" in text
    assert "spikes not shown" not in text  # found through the outputs' source attribute


def test_live_run_page_updates_and_drops_stale_images(tmp_path):
    run = make_run(tmp_path, finished=False, generations=2, partial_line=True)
    (run / "report").mkdir()
    (run / "report" / "trials.png").write_bytes(b"stale")  # from an earlier page
    text, images = check_page(write_report(run))
    assert images == {"hyperparameters", "scores"}
    assert not (run / "report" / "trials.png").exists()
    assert 'http-equiv="refresh"' in text and "in progress: generation 2" in text
    assert "written when the run finishes" in text
    # before the first generation: still every section, with notes
    (run / "pbt" / "hp_log.csv").unlink()
    text, images = check_page(write_report(run))
    assert images == set() and "no generation has finished yet" in text


def test_missing_or_changed_data_is_explained(tmp_path):
    from conftest import tiny_dataset

    from autolfads.analysis.report_data import gather

    run = make_run(tmp_path)
    (tmp_path / "data.h5").unlink()
    text, images = check_page(write_report(run))
    assert "spikes not shown: the data file" in text and "no longer there" in text
    assert "trials" in images  # rates and true rates are still shown, without the raster
    view = gather(Location(run), tiny_dataset(n_trials=30))  # e.g. the file was replaced
    assert view.dataset is None and "no longer matches the outputs" in view.notes["data"]


def test_runner_passes_its_dataset_to_a_live_report(tmp_path):
    from conftest import tiny_dataset

    run = make_run(tmp_path, finished=False, generations=1)
    (tmp_path / "data.h5").unlink()  # the runner's data need not be a file at all
    text, _ = check_page(write_report(run, dataset=tiny_dataset(n_trials=40)))
    assert "tiny test data: 40 trials x 15 bins x 8 neurons" in text


def test_report_command(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path, generations=2, finished=False)  # fewer figures: a quicker test
    code, out, err = run_cli(monkeypatch, capsys, "report", run)
    assert code == 0, err
    assert out.strip() == f"wrote {run / 'report' / 'index.html'}"


@pytest.mark.parametrize("case, words", [
    ("missing", ["not found"]),
    ("file", ["is a file"]),
    ("not a run", ["not an autolfads run directory"]),
    ("bucket without a run", ["memory://empty/run", "not an autolfads run directory"]),
    ("unknown storage", ["nosuch://bucket/run", "not known"]),
])
def test_report_errors(tmp_path, monkeypatch, capsys, case, words):
    # memory:// stands in for a bucket (no network, no cloud driver needed)
    target = {"missing": tmp_path / "nope", "file": tmp_path / "f.txt", "not a run": tmp_path,
              "bucket without a run": "memory://empty/run",
              "unknown storage": "nosuch://bucket/run"}[case]
    (tmp_path / "f.txt").write_text("x")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a bucket run's mirror goes
    code, _, err = run_cli(monkeypatch, capsys, "report", target)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "report").exists()
    assert not list(tmp_path.glob("autolfads-run-*"))  # no empty mirror left behind


def test_headline_split_and_decode_targets_that_skip_a_number(tmp_path):
    """bits/spike is named after the split it is on; a constant (left out) target 0 does not
    hide targets 1 and 2."""
    from autolfads.analysis.report_text import decoding_table as _decoding

    run = make_run(tmp_path)
    m = json.loads((run / "metrics.json").read_text())
    m.update(headline_split="test", bps=0.25)
    (run / "metrics.json").write_text(json.dumps(m))
    text, _ = check_page(write_report(run))
    assert "bits/spike (test) 0.25" in text and "bits/spike (validation)" not in text
    table = _decoding({"decode_r2": 0.5, "decode_r2_1": 0.4, "decode_r2_2": 0.6})
    assert "<td>1</td>" in table and "<td>2</td>" in table and "<td>0</td>" not in table


def test_a_continuous_recording_without_truth_is_scored_by_its_likelihood(tmp_path):
    run = make_run(tmp_path, truth=False)
    m = json.loads((run / "metrics.json").read_text())
    m.update(observation="gaussian", nll_per_bin_valid=1.25)
    (run / "metrics.json").write_text(json.dumps(m))
    text, _ = check_page(write_report(run))
    assert "gaussian negative log-likelihood per bin" in text and "valid 1.25" in text
    assert "mean R^2 per channel" not in text  # no table of dashes
