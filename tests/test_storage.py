"""Runs kept in a bucket: an S3 protocol server (moto) on 127.0.0.1 stands in for gs:// / s3://."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import TINY_MODEL, run_cli, tiny_dataset

from autolfads.rundir import location
from autolfads.rundir.layout import join
from autolfads.rundir.location import Location

TINY = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "train.batch_size=16", "train.n_samples=3", "train.kl_increase_epochs=2",
    "train.l2_increase_epochs=2"]


@pytest.fixture
def bucket(monkeypatch):
    """An empty S3 bucket on a moto server bound to 127.0.0.1; its URI prefix."""
    pytest.importorskip("s3fs", reason="s3fs is needed for s3:// runs (pip install s3fs)")
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for k, v in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                     "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        import boto3
        import fsspec

        boto3.client("s3").create_bucket(Bucket="lab")
        fsspec.config.conf.pop("s3", None)
        yield "s3://lab"
    finally:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def test_storage_primitives_local_and_s3(tmp_path, bucket):
    for base in (str(tmp_path / "run"), f"{bucket}/run"):
        loc = join(base, "pbt", "checkpoints", "w00", "gen001.pt")
        location.put_bytes(loc, b"abc")
        assert location.exists(loc) and location.get_bytes(loc) == b"abc"
        assert location.glob(join(base, "pbt", "checkpoints", "w*", "gen*.pt")) == [loc]
        location.remove(loc)
        assert not location.exists(loc)
    store = Location(f"{bucket}/r2")
    assert store.remote and store.is_empty() and not store.has_run()
    (store.local / "config.yaml").write_text("x: 1\n")
    (store.local / "pbt").mkdir()
    (store.local / "pbt" / "hp_log.csv").write_text("generation\n1\n")
    store.sync()
    assert store.has_run() and not store.is_empty()
    again = Location(f"{bucket}/r2")
    again.fetch("config.yaml", "pbt/hp_log.csv", "pbt/missing.json")
    assert (again.local / "pbt" / "hp_log.csv").read_text() == "generation\n1\n"
    # pull: every file but the checkpoints, with the bucket's modification times.
    location.put_bytes(f"{bucket}/r2/pbt/checkpoints/w00/gen001.pt", b"weights")
    third = Location(f"{bucket}/r2")
    pulled_at = time.time()
    third.pull()
    files = sorted(p.relative_to(third.local).as_posix() for p in third.local.rglob("*")
                   if p.is_file())
    assert files == ["config.yaml", "pbt/hp_log.csv"]
    assert (third.local / "config.yaml").stat().st_mtime < pulled_at  # the upload's time
    # --force in a bucket removes what a run writes, nothing else kept there; an input inside
    # what it removes, and a prefix of the user's own files, are refused
    from autolfads.errors import UserInputError
    from autolfads.run_start import prepare_store

    with pytest.raises(UserInputError, match="is where the run writes its own output"):
        prepare_store(Location(f"{bucket}/r2"), force=True,
                      inputs=(f"{bucket}/r2/output/d.h5", None))
    location.put_bytes(f"{bucket}/mine/config.yaml", b"model: {}")
    location.put_bytes(f"{bucket}/mine/data.h5", b"x")
    with pytest.raises(UserInputError, match=r"not an autolfads run \(config.yaml, data.h5\)"):
        prepare_store(Location(f"{bucket}/mine"), force=True)
    assert location.exists(f"{bucket}/mine/config.yaml")

    location.put_bytes(f"{bucket}/r2/notes.txt", b"mine")
    prepare_store(Location(f"{bucket}/r2"), force=True)
    assert location.get_bytes(f"{bucket}/r2/notes.txt") == b"mine"
    assert not location.exists(f"{bucket}/r2/config.yaml")
    assert not location.glob(join(f"{bucket}/r2", "pbt", "checkpoints", "w*", "gen*.pt"))


def test_data_read_from_a_bucket(bucket, tmp_path):
    import autolfads
    from autolfads.data.writers import write_tutorial_mat
    from autolfads.errors import UserInputError

    ds = tiny_dataset(n_trials=40)
    local = write_tutorial_mat(tmp_path / "tiny.mat", ds)
    uri = f"{bucket}/data/tiny.mat"
    location.put_bytes(uri, local.read_bytes())
    remote = autolfads.load(uri)
    assert remote.source == uri
    np.testing.assert_array_equal(remote.all_data(), autolfads.load(local).all_data())
    with pytest.raises(UserInputError, match=f"^{bucket}/data/missing.mat: file not found"):
        autolfads.load(f"{bucket}/data/missing.mat")
    location.put_bytes(f"{bucket}/data/bad.mat", b"not a mat file")
    with pytest.raises(UserInputError) as err:
        autolfads.load(f"{bucket}/data/bad.mat")
    msg = str(err.value)
    assert msg.startswith(f"{bucket}/data/bad.mat") and "autolfads-" not in msg, msg


@pytest.mark.slow
def test_autolfads_run_into_an_s3_bucket(bucket, tmp_path, monkeypatch, capsys):
    import autolfads
    from autolfads.data.writers import write_lfads_h5

    out = f"{bucket}/runs/tiny"
    ds = tiny_dataset(n_trials=40)
    data = f"{bucket}/data/tiny.h5"  # the data in the bucket too, as on a cluster
    location.put_bytes(data, write_lfads_h5(tmp_path / "tiny.h5", ds).read_bytes())
    autolfads.run(data, out, population=3, generations=1, epochs_per_generation=2,
                  overrides=TINY, quiet=True)
    # As after a lost driver: a new process (here: a fresh local mirror) continues from the
    # bucket's last completed generation, reading the data from where the run recorded it.
    res = autolfads.run(None, out, generations=2, resume=True, quiet=True)
    assert res.dataset.source == data
    hp = location.get_bytes(f"{out}/pbt/hp_log.csv").decode().splitlines()[1:]
    assert sorted(int(r.split(",")[0]) for r in hp) == [1, 1, 1, 2, 2, 2]
    for name in ("config.yaml", "metrics.json", "pbt/hp_log.csv", "pbt/decision_log.csv",
                 "pbt/best_worker.json", "best_model/checkpoint.pt", "output/lfads_output.mat"):
        assert location.exists(f"{out}/{name}"), name
    metrics = json.loads(location.get_bytes(f"{out}/metrics.json"))
    assert metrics["generations"] == 2
    # Workers wrote their checkpoints to the bucket; only the last generation's are kept.
    kept = location.glob(f"{out}/pbt/checkpoints/w*/gen*.pt")
    assert [k.rsplit("/", 1)[1] for k in kept] == ["gen002.pt"] * 3
    local = res.out / "output" / "lfads_output.mat"
    assert scipy.io.loadmat(local)["rates"].shape == (8, 15, 40)
    np.testing.assert_allclose(scipy.io.loadmat(local)["rates"].transpose(2, 1, 0), res.rates,
                               rtol=1e-6)
    # The bucket is all a user needs to look at the run and take the outputs home.
    code, out_text, err = run_cli(monkeypatch, capsys, "status", out)
    assert code == 0, err
    assert "best" in out_text.lower() and "worker" in out_text.lower()
    exported = tmp_path / "rates.mat"
    code, _, err = run_cli(monkeypatch, capsys, "export", out, "--format", "mat", "--out",
                           exported)
    assert code == 0, err
    mat = scipy.io.loadmat(exported)
    np.testing.assert_allclose(mat["rates"], scipy.io.loadmat(local)["rates"], rtol=1e-6)
    # The report of a run in a bucket: written in a local copy (to open) and uploaded; its
    # spike rasters read the data from the bucket again.
    location.remove(f"{out}/report/index.html")
    code, out_text, err = run_cli(monkeypatch, capsys, "report", out)
    assert code == 0, err
    page = location.get_bytes(f"{out}/report/index.html").decode()
    assert "spikes not shown" not in page and "not available" not in page
    shown = out_text.split("to open here: ")[1].strip().rstrip(")")
    assert Path(shown).read_text(encoding="utf-8") == page
    assert location.glob(f"{out}/report/*.png")
