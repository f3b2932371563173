"""`autolfads cloud ...`: a GCP Ray cluster for AutoLFADS, from config to downloaded outputs.

    autolfads cloud init --project P --bucket gs://B   # writes cluster.yaml
    autolfads cloud up cluster.yaml                    # cost estimate, confirm, `ray up`
    autolfads cloud submit cluster.yaml DATA --name N  # `ray job submit --no-wait`
    autolfads cloud status cluster.yaml N --logs
    autolfads cloud download cluster.yaml N            # bucket -> runs/N
    autolfads cloud down cluster.yaml
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from autolfads.cloud import gcp, lifecycle
from autolfads.cloud.cluster import (
    HOST_IMAGE,
    ClusterSpec,
    build_config,
    load_config,
    write_config,
)
from autolfads.cloud.cost import estimate, load_prices
from autolfads.cloud.validate import Shape, check_config
from autolfads.errors import UserInputError

cloud_app = typer.Typer(no_args_is_help=True,
                        help="Run AutoLFADS on a Google Cloud Ray cluster (see README).")

CFG = typer.Argument(..., help="Cluster YAML written by `autolfads cloud init`.")
DRY = typer.Option(False, "--dry-run", help="Print the commands instead of running them.")
ADDRESS_HELP = ("Job server reached through your own tunnel (`ray dashboard CFG` gives "
                "http://127.0.0.1:8265); default: run `ray job` on the head via `ray exec`.")
PRICES = typer.Option(None, "--prices", help="YAML/JSON price file overriding the built-in table.")


def _checked(cfg: Path) -> Shape:
    return check_config(load_config(cfg), cfg.name)


def _bucket(cfg: Path, bucket: str | None) -> str:
    # Only the bucket is read: status/download/down must work on a config edited after `up`.
    meta = load_config(cfg).get("metadata") or {}
    b = bucket or (meta.get("autolfads") or {}).get("bucket")
    if not b:
        raise UserInputError(
            f"{cfg.name}: no metadata.autolfads.bucket; pass --bucket gs://NAME")
    field = "--bucket" if bucket else f"{cfg.name}: metadata.autolfads.bucket"
    return gcp.check_bucket(str(b), field)


def _confirm_and_execute(cmds: list[lifecycle.Cmd], dry_run: bool, yes: bool, question: str,
                         declined: str) -> bool:
    """Print `cmds` (dry run), or ask `question` unless `yes` and run them; True if they ran."""
    if dry_run:
        lifecycle.execute(cmds, dry_run=True, echo=typer.echo)
        return False
    if not yes and not typer.confirm(question, default=False):
        typer.echo(declined)
        return False
    lifecycle.execute(cmds)
    return True


@cloud_app.command("init")
def init(
    project: str = typer.Option(..., help="GCP project id."),
    bucket: str = typer.Option(..., help="gs:// bucket for data, checkpoints and outputs."),
    zone: str = typer.Option("us-central1-a", help="Zone of every node (GPUs differ by zone)."),
    region: str = typer.Option(None, help="Region (default: the zone's)."),
    gpu_type: str = typer.Option("nvidia-tesla-t4", help="GPU, e.g. nvidia-tesla-t4, nvidia-l4."),
    gpus_per_worker: int = typer.Option(1, help="GPUs per worker node."),
    min_workers: int = typer.Option(0, help="Worker nodes kept running."),
    max_workers: int = typer.Option(8, help="Most worker nodes the autoscaler starts."),
    spot: bool = typer.Option(False, "--spot/--on-demand",
                              help="Spot (preemptible) GPU workers; the head stays on demand."),
    disk_gb: int = typer.Option(100, help="Boot disk per node, GB."),
    image: str = typer.Option(None, help="Docker image the nodes pull (default: Artifact "
                                         "Registry REGION-docker.pkg.dev/PROJECT/autolfads)."),
    head_machine_type: str = typer.Option("n1-standard-4", help="Head (coordinator) VM."),
    worker_machine_type: str = typer.Option(None, help="Worker VM (default: fits the GPUs)."),
    cluster_name: str = typer.Option("autolfads", help="Cluster name (prefix of VM names)."),
    host_image: str = typer.Option(HOST_IMAGE, help="VM boot image (Deep Learning "
                                   "VM with Docker and the NVIDIA runtime)."),
    launcher_in_vpc: bool = typer.Option(False, help="Reach the head by its internal address "
                                         "too (run the launcher inside the VPC, e.g. a bastion)."),
    out: Path = typer.Option(Path("cluster.yaml"), "--out", help="YAML file to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Write a Ray cluster-launcher YAML for GCP and check it offline."""
    spec = ClusterSpec(
        project=project, bucket=bucket, zone=zone, region=region, gpu_type=gpu_type,
        gpus_per_worker=gpus_per_worker, min_workers=min_workers, max_workers=max_workers,
        spot=spot, disk_gb=disk_gb, image=image, head_machine_type=head_machine_type,
        worker_machine_type=worker_machine_type, cluster_name=cluster_name,
        host_image=host_image, launcher_in_vpc=launcher_in_vpc).resolved()
    if out.exists() and not force:
        raise UserInputError(f"--out {out}: file exists; pass --force to replace it")
    cfg = build_config(spec)
    shape = check_config(cfg, out.name)
    write_config(cfg, out, force=force)
    typer.echo(f"wrote {out}: head {spec.head_machine_type} + up to {spec.max_workers} x "
               f"{shape.worker_machine} with {spec.gpus_per_worker} {spec.gpu_type} "
               f"({'spot' if spec.spot else 'on demand'}), image {spec.image}")
    typer.echo(f"next: push the image (README), then `autolfads cloud up {out}`")


@cloud_app.command("validate")
def validate(cfg: Path = CFG) -> None:
    """Check a (hand-edited) cluster YAML with Ray's schema and our GCP checks, offline."""
    shape = _checked(cfg)
    typer.echo(f"{cfg}: ok (Ray's cluster schema and autolfads checks): up to "
               f"{shape.max_workers} x {shape.worker_machine} with {shape.gpus_per_worker} "
               f"{shape.gpu_type}{' spot' if shape.spot else ''}")


@cloud_app.command("cost")
def cost(
    gpus: int = typer.Option(..., help="GPUs in total."),
    gpu_type: str = typer.Option(..., help="GPU, e.g. nvidia-tesla-t4."),
    hours: float = typer.Option(..., help="Wall-clock hours of the run."),
    spot: bool = typer.Option(False, "--spot", help="Spot prices for the GPU workers."),
    gpus_per_node: int = typer.Option(1, help="GPUs per worker VM."),
    machine_type: str = typer.Option(None, help="Worker VM (default: fits the GPUs)."),
    head_machine_type: str = typer.Option("n1-standard-4", help="Head VM (on demand)."),
    disk_gb: int = typer.Option(100, help="Boot disk per node, GB."),
    storage_gb: float = typer.Option(10.0, help="Bucket data kept for a month, GB."),
    prices: Path = PRICES,
) -> None:
    """Estimate what a run costs, from the dated price table in the package."""
    est = estimate(gpus, gpu_type, hours, spot, gpus_per_node=gpus_per_node,
                   machine_type=machine_type, head_machine_type=head_machine_type,
                   disk_gb=disk_gb, storage_gb=storage_gb, prices=load_prices(prices))
    typer.echo(est.render())


@cloud_app.command("up")
def up(
    cfg: Path = CFG,
    hours: float = typer.Option(1.0, help="Expected run length for the estimate, hours."),
    prices: Path = PRICES,
    yes: bool = typer.Option(False, "--yes", "-y", help="Start without asking."),
    dry_run: bool = DRY,
) -> None:
    """Print the cost estimate, ask, then start the cluster (`ray up`)."""
    shape = _checked(cfg)
    try:
        est = estimate(shape.max_workers * shape.gpus_per_worker, shape.gpu_type, hours,
                       shape.spot, gpus_per_node=shape.gpus_per_worker,
                       machine_type=shape.worker_machine, head_machine_type=shape.head_machine,
                       disk_gb=shape.disk_gb, prices=load_prices(prices))
        typer.echo(est.render().replace("Estimated cost:", "Estimated cost at full size:", 1))
    except UserInputError as e:
        # An estimate is a courtesy; a GPU missing from the table must not block the cluster.
        typer.echo(f"cost estimate unavailable: {e}")
    if not _confirm_and_execute(lifecycle.up_commands(cfg), dry_run, yes,
                                "Start this cluster?", "Not started."):
        return
    typer.echo(f"cluster up. Web UI: `ray dashboard {cfg}` then http://127.0.0.1:8265; "
               f"stop it with `autolfads cloud down {cfg}`")


@cloud_app.command("submit", context_settings={"allow_extra_args": True,
                                                "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    cfg: Path = CFG,
    data: str = typer.Argument(None, help="Data file (local: uploaded to the bucket) or gs:// "
                                          "URI; default: built-in Lorenz."),
    name: str = typer.Option(None, help="Run name (default: run-DATE-TIME); outputs go to "
                                        "BUCKET/runs/NAME."),
    workers_per_gpu: int = typer.Option(1, help="LFADS workers sharing one GPU."),
    bucket: str = typer.Option(None, help="Override the YAML's bucket."),
    address: str = typer.Option(None, help=ADDRESS_HELP),
    working_dir: str = typer.Option(None, help="Upload this folder with the job (needs "
                                               "--address)."),
    dry_run: bool = DRY,
) -> None:
    """Start `autolfads run` on the cluster as a Ray job; it keeps running after you disconnect.

    Options after `--` go to `autolfads run`, e.g. `-- --population 16 --generations 30`.
    """
    name = name or time.strftime("run-%Y%m%d-%H%M%S")
    b = _bucket(cfg, bucket)
    if workers_per_gpu < 1:
        raise UserInputError(f"--workers-per-gpu {workers_per_gpu}: must be at least 1")
    run_args = list(ctx.args)
    if data and data.startswith("-"):
        # No DATA given: click put the first option meant for `autolfads run` there.
        run_args, data = [data, *run_args], None
    cmds = lifecycle.submit_commands(cfg, b, name, data, run_args,
                                     workers_per_gpu=workers_per_gpu, address=address,
                                     working_dir=working_dir)
    lifecycle.execute(cmds, dry_run=dry_run, echo=typer.echo)
    if not dry_run:
        typer.echo(f"submitted {lifecycle.job_id(name)}; outputs: "
                   f"{lifecycle.run_uri(b, name)}\nfollow it: autolfads cloud status {cfg} "
                   f"{name} --follow")


@cloud_app.command("status")
def status(
    cfg: Path = CFG,
    name: str = typer.Argument(None, help="Run name (default: list all jobs)."),
    logs: bool = typer.Option(False, "--logs", help="Print the run's log so far."),
    follow: bool = typer.Option(False, "--follow", help="Stream the log (Ctrl-C stops "
                                                        "watching, not the run)."),
    address: str = typer.Option(None, help=ADDRESS_HELP),
    dry_run: bool = DRY,
) -> None:
    """Job status (and log) of a run on the cluster."""
    load_config(cfg)
    cmds = lifecycle.status_commands(cfg, name, logs=logs, follow=follow, address=address)
    lifecycle.execute(cmds, dry_run=dry_run, echo=typer.echo)


@cloud_app.command("download")
def download(
    cfg: Path = CFG,
    name: str = typer.Argument(..., help="Run name given to `cloud submit`."),
    dest: Path = typer.Option(Path("runs"), "--dest", help="Local folder; the run lands in "
                                                           "DEST/NAME."),
    bucket: str = typer.Option(None, help="Override the YAML's bucket."),
    dry_run: bool = DRY,
) -> None:
    """Copy a run's outputs from the bucket to this machine."""
    b = _bucket(cfg, bucket)
    cmds = lifecycle.download_commands(b, name, dest)
    if not dry_run:
        if (dest / name).exists():
            raise UserInputError(f"--dest {dest}: {dest / name} exists; move it or choose "
                                 "another --dest")
        dest.mkdir(parents=True, exist_ok=True)
    lifecycle.execute(cmds, dry_run=dry_run, echo=typer.echo)
    if not dry_run:
        typer.echo(f"downloaded to {dest / name}")


@cloud_app.command("down")
def down(
    cfg: Path = CFG,
    yes: bool = typer.Option(False, "--yes", "-y", help="Stop without asking."),
    dry_run: bool = DRY,
) -> None:
    """Delete the cluster's VMs (`ray down`); the bucket and its outputs stay."""
    load_config(cfg)
    _confirm_and_execute(lifecycle.down_commands(cfg), dry_run, yes,
                         "Delete every VM of this cluster?", "Nothing deleted.")
