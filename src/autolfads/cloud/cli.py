"""`autolfads cloud ...`: a Ray cluster for AutoLFADS (GCP, or a lab's own hosts over SSH), from
config to downloaded outputs.

    autolfads cloud init --project P --bucket gs://B   # writes cluster.yaml (GCP)
    autolfads cloud init --provider local --head-ip A --worker-ips B,C --ssh-user U \\
        --ssh-key K --storage /nfs/autolfads           # a lab's own hosts
    autolfads cloud up cluster.yaml                    # doctor, cost estimate, confirm, `ray up`
    autolfads cloud submit cluster.yaml DATA --name N  # a Ray job; goes on when you disconnect
    autolfads cloud status cluster.yaml N --follow     # nodes, job, generation; the log
    autolfads cloud stop cluster.yaml N                # stop it (resume: submit --resume N)
    autolfads cloud download cluster.yaml N            # storage -> runs/N
    autolfads cloud down cluster.yaml
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from autolfads.cloud import cost as costs
from autolfads.cloud import lifecycle
from autolfads.cloud.cluster import (
    HOST_IMAGE,
    ClusterSpec,
    build_config,
    load_config,
    write_config,
)
from autolfads.cloud.cost import estimate, load_prices
from autolfads.cloud.local import LocalSpec, build_local_config, default_cluster_name
from autolfads.cloud.validate import Shape, check_config
from autolfads.errors import UserInputError

cloud_app = typer.Typer(no_args_is_help=True,
                        help="Run AutoLFADS on a Ray cluster: Google Cloud or your own hosts "
                             "(see README).")

CFG = typer.Argument(..., help="Cluster YAML written by `autolfads cloud init`.")
DRY = typer.Option(False, "--dry-run", help="Print the commands instead of running them.")
ADDRESS = typer.Option(None, "--address", help="Job server reached through your own tunnel "
                       "(`ray dashboard CFG` gives http://127.0.0.1:8265); default: on the head "
                       "via `ray exec`.")
PRICES = typer.Option(None, "--prices", help="YAML/JSON price file overriding the built-in table.")
STORAGE = typer.Option(None, "--bucket", "--storage", help="Override the YAML's run storage.")


def _checked(cfg: Path) -> Shape | None:
    return check_config(load_config(cfg), cfg.name)


def _cluster(cfg: Path, storage: str | None = None, need_storage: bool = True
             ) -> lifecycle.Cluster:
    # Only what the lifecycle needs is read: status/download/down must work on a config edited
    # after `up`.
    c = lifecycle.cluster_of(cfg, load_config(cfg), storage, need_storage)
    if c.google and need_storage:
        from autolfads.cloud.gcp import check_bucket

        check_bucket(c.storage, "--bucket" if storage else
                     f"{cfg.name}: metadata.autolfads.bucket")
    return c


def _confirm_and_execute(cmds: list[lifecycle.Cmd], dry_run: bool, yes: bool, question: str,
                         declined: str, if_stopped: str = "") -> bool:
    """Print `cmds` (dry run), or ask `question` unless `yes` and run them; True if they ran.
    `if_stopped`: what to tell the user when the commands fail or are interrupted part-way
    (what may be left running, and how to remove it)."""
    if dry_run:
        lifecycle.execute(cmds, dry_run=True, echo=typer.echo)
        return False
    if not yes and not typer.confirm(question, default=False):
        typer.echo(declined)
        return False
    try:
        lifecycle.execute(cmds)
    except UserInputError as e:
        raise UserInputError(f"{e}{'; ' + if_stopped if if_stopped else ''}") from None
    except KeyboardInterrupt:
        if if_stopped:
            typer.echo(if_stopped, err=True)
        raise
    return True


@cloud_app.command("init")
def init(
    provider: str = typer.Option("gcp", help="gcp (Google Cloud) or local (your own hosts "
                                             "over SSH)."),
    project: str = typer.Option(None, help="GCP project id."),
    bucket: str = typer.Option(None, help="gs:// bucket for data, checkpoints and outputs."),
    zone: str = typer.Option("us-central1-a", help="Zone of every node (GPUs differ by zone)."),
    region: str = typer.Option(None, help="Region (default: the zone's)."),
    gpu_type: str = typer.Option("t4", help="GPU: t4, l4, v100, p100, p4, a100, a100-80gb, "
                                            "h100 (or GCP's name, e.g. nvidia-tesla-t4)."),
    gpus_per_worker: int = typer.Option(1, help="GPUs per worker node."),
    min_workers: int = typer.Option(0, help="Worker nodes kept running."),
    max_workers: int = typer.Option(8, help="Most worker nodes the autoscaler starts."),
    spot: bool = typer.Option(False, "--spot/--on-demand",
                              help="Spot (preemptible) GPU workers; the head stays on demand."),
    disk_gb: int = typer.Option(100, help="Boot disk per node, GB."),
    image: str = typer.Option(None, help="Docker image the nodes run, e.g. REGION-docker.pkg."
                                         "dev/PROJECT/autolfads/autolfads:VERSION (default: no "
                                         "image; nodes install this package from a wheel)."),
    head_machine_type: str = typer.Option("n1-standard-4", help="Head (coordinator) VM."),
    worker_machine_type: str = typer.Option(None, help="Worker VM (default: fits the GPUs)."),
    cluster_name: str = typer.Option(None, help="Cluster name (default autolfads-$USER)."),
    host_image: str = typer.Option(HOST_IMAGE, help="VM boot image: a Deep Learning VM family "
                                   "with the NVIDIA driver (and Docker, for --image)."),
    launcher_in_vpc: bool = typer.Option(False, help="Reach the head by its internal address "
                                         "too (run the launcher inside the VPC, e.g. a bastion)."),
    head_ip: str = typer.Option(None, help="local: the head host's address."),
    worker_ips: str = typer.Option(None, help="local: worker host addresses, comma-separated."),
    ssh_user: str = typer.Option(None, help="local: the account Ray logs in as on every host."),
    ssh_key: str = typer.Option(None, help="local: private key that logs in to every host."),
    storage: str = typer.Option(None, help="local: where runs are kept, a path every host sees "
                                           "(NFS) or a bucket URI."),
    python: str = typer.Option(None, help="local: the hosts' Python that already has autolfads "
                                          "(nothing is installed); default: install a wheel."),
    gpus: bool = typer.Option(False, "--gpus/--no-gpus", help="local: the hosts have NVIDIA "
                                                              "GPUs (CUDA PyTorch is installed)."),
    object_store_mb: int = typer.Option(None, help="local: Ray's object store per host, MB "
                                                   "(default: 30% of its memory)."),
    out: Path = typer.Option(Path("cluster.yaml"), "--out", help="YAML file to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Write a Ray cluster-launcher YAML (GCP, or your own hosts) and check it offline."""
    if out.exists() and not force:
        raise UserInputError(f"--out {out}: file exists; pass --force to replace it")
    name = cluster_name or default_cluster_name()
    if provider == "local":
        missing = [f for f, v in (("--head-ip", head_ip), ("--ssh-user", ssh_user),
                                  ("--ssh-key", ssh_key), ("--storage", storage)) if not v]
        if missing:
            raise UserInputError(f"--provider local: needs {', '.join(missing)}")
        spec = LocalSpec(head_ip=head_ip, worker_ips=[w for w in (worker_ips or "").split(",")
                                                      if w.strip()],
                         ssh_user=ssh_user, ssh_key=ssh_key, storage=storage,
                         cluster_name=name, python=python, gpus=gpus,
                         object_store_mb=object_store_mb).resolved(out)
        cfg = build_local_config(spec)
        check_config(cfg, out.name)
        from autolfads.cloud.local import HEADER

        write_config(cfg, out, force=force, header=HEADER)
        typer.echo(f"wrote {out}: head {spec.head_ip} + {len(spec.worker_ips)} worker host(s), "
                   f"ssh {spec.ssh_user}, runs in {spec.storage}")
        typer.echo(f"next: `autolfads cloud up {out}`")
        return
    if provider != "gcp":
        raise UserInputError(f"--provider {provider}: expected gcp or local")
    missing = [f for f, v in (("--project", project), ("--bucket", bucket)) if not v]
    if missing:
        raise UserInputError(f"--provider gcp: needs {', '.join(missing)}")
    gspec = ClusterSpec(
        project=project, bucket=bucket, zone=zone, region=region, gpu_type=gpu_type,
        gpus_per_worker=gpus_per_worker, min_workers=min_workers, max_workers=max_workers,
        spot=spot, disk_gb=disk_gb, image=image, head_machine_type=head_machine_type,
        worker_machine_type=worker_machine_type, cluster_name=name,
        host_image=host_image, launcher_in_vpc=launcher_in_vpc).resolved(out)
    cfg = build_config(gspec)
    shape = check_config(cfg, out.name)
    assert shape is not None
    write_config(cfg, out, force=force)
    runs = f"image {gspec.image}" if gspec.image else "this package's wheel, no image"
    typer.echo(f"wrote {out}: cluster {gspec.cluster_name}, head {gspec.head_machine_type} + up "
               f"to {gspec.max_workers} x {shape.worker_machine} with {gspec.gpus_per_worker} "
               f"{gspec.gpu_type} ({'spot' if gspec.spot else 'on demand'}, no external IP), "
               f"{runs}")
    typer.echo(f"next: `autolfads cloud up {out}`" + (" (after pushing the image, README)"
                                                       if gspec.image else ""))


@cloud_app.command("validate")
def validate(cfg: Path = CFG) -> None:
    """Check a (hand-edited) cluster YAML with Ray's schema and our checks, offline."""
    shape = _checked(cfg)
    if shape is None:
        typer.echo(f"{cfg}: ok (Ray's cluster schema and autolfads checks): your own hosts")
        return
    typer.echo(f"{cfg}: ok (Ray's cluster schema and autolfads checks): up to "
               f"{shape.max_workers} x {shape.worker_machine} with {shape.gpus_per_worker} "
               f"{shape.gpu_type}{' spot' if shape.spot else ''}")


@cloud_app.command("cost")
def cost(
    gpus: int = typer.Option(..., help="GPUs in total."),
    gpu_type: str = typer.Option(..., help="GPU: t4, l4, v100, a100, ... (or GCP's name)."),
    hours: float = typer.Option(..., help="Wall-clock hours of the run."),
    spot: bool = typer.Option(False, "--spot", help="Spot prices for the GPU workers."),
    gpus_per_node: int = typer.Option(1, help="GPUs per worker VM."),
    machine_type: str = typer.Option(None, help="Worker VM (default: fits the GPUs)."),
    head_machine_type: str = typer.Option("n1-standard-4", help="Head VM (on demand)."),
    disk_gb: int = typer.Option(100, help="Boot disk per node, GB."),
    storage_gb: float = typer.Option(10.0, help="Bucket data kept for a month, GB."),
    zone: str = typer.Option("us-central1-a", help="Zone of the cluster (the table is one "
                                                   "region's prices; says so for others)."),
    boot_minutes: float = typer.Option(costs.BOOT_MINUTES, help="Billed boot of each worker: "
                                       "NVIDIA driver and CUDA PyTorch install, or image pull."),
    idle_minutes: float = typer.Option(costs.IDLE_MINUTES, help="Billed idle time of each "
                                       "worker after the run (idle_timeout_minutes)."),
    overhead_hours: float = typer.Option(costs.HEAD_OVERHEAD_HOURS, help="Head hours beyond "
                                         "the run (from `cloud up` to `cloud down`)."),
    nat_gb_per_worker: float = typer.Option(costs.NAT_GB_PER_WORKER, help="GB each worker "
                                            "downloads through Cloud NAT (0 with --image)."),
    prices: Path = PRICES,
) -> None:
    """Estimate what a run costs, from the dated price table in the package."""
    from autolfads.cloud.gcp import check_zone

    est = estimate(gpus, gpu_type, hours, spot, gpus_per_node=gpus_per_node,
                   machine_type=machine_type, head_machine_type=head_machine_type,
                   disk_gb=disk_gb, storage_gb=storage_gb, prices=load_prices(prices),
                   region=check_zone(zone), boot_minutes=boot_minutes,
                   idle_minutes=idle_minutes, head_overhead_hours=overhead_hours,
                   nat_gb_per_worker=nat_gb_per_worker)
    typer.echo(est.render())


def _estimate(shape: Shape, hours: float, prices: Path | None) -> bool:
    """Print the cost estimate; False (said plainly) where there is none."""
    from autolfads.cloud.cost import estimate_shape

    try:
        est = estimate_shape(shape, hours, load_prices(prices))
        typer.echo(est.render().replace("Estimated cost:", "Estimated cost at full size:", 1))
        return True
    except UserInputError as e:
        # An estimate is a courtesy; a GPU missing from the table must not block the cluster,
        # but the question below then says that no estimate was given.
        typer.echo(f"NO COST ESTIMATE: {e}; check the prices yourself "
                   "(https://cloud.google.com/compute/gpus-pricing) or pass --prices FILE")
        return False


@cloud_app.command("up")
def up(
    cfg: Path = CFG,
    hours: float = typer.Option(1.0, help="Expected run length for the estimate, hours."),
    prices: Path = PRICES,
    restart: bool = typer.Option(False, "--restart", help="Restart Ray on the nodes (stops a "
                                                          "running job); default: keep it."),
    no_doctor: bool = typer.Option(False, "--no-doctor", help="Skip the preflight checks."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Start without asking."),
    dry_run: bool = DRY,
) -> None:
    """Check the prerequisites, print the cost estimate, ask, then start the cluster."""
    if hours <= 0:
        raise UserInputError(f"--hours {hours}: give the expected run length in hours (> 0), "
                             "for the cost estimate")
    shape = _checked(cfg)
    c = _cluster(cfg)
    if not no_doctor and not dry_run:
        from autolfads.cloud.doctor import run_doctor

        run_doctor(cfg, echo=typer.echo)
    priced = shape is None or _estimate(shape, hours, prices)
    cmds = lifecycle.up_commands(c, restart=restart)
    if c.google:
        from autolfads.cloud import gcp_setup

        # The firewall rule, Cloud NAT and worker account the YAML's closed network relies on.
        cmds = [*gcp_setup.setup_commands(load_config(cfg)), *cmds]
    billing = (f"the cluster may be partly up and billing: `autolfads cloud down {cfg}` deletes "
               "its VMs" + (f" (see them: https://console.cloud.google.com/compute/instances?"
                            f"project={c.project})" if c.google and c.project else ""))
    question = "Start this cluster?" if priced else "Start this cluster WITHOUT a cost estimate?"
    if not _confirm_and_execute(cmds, dry_run, yes, question, "Not started.",
                                if_stopped=billing):
        return
    from autolfads.cloud.gcp_setup import check_token_file

    said = check_token_file()
    if said:
        typer.echo(said)
    typer.echo(f"cluster up{'' if restart else ' (Ray not restarted: a running job goes on)'}. "
               f"Web UI: `ray dashboard {cfg}` then http://127.0.0.1:8265; "
               f"stop it with `autolfads cloud down {cfg}`")


@cloud_app.command("submit", context_settings={"allow_extra_args": True,
                                                "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    cfg: Path = CFG,
    data: str = typer.Argument(None, help="Data file (local: uploaded to the run storage) or a "
                                          "URI; default: built-in Lorenz."),
    name: str = typer.Option(None, help="Run name (default: run-DATE-TIME); outputs go to "
                                        "STORAGE/runs/NAME."),
    resume: str = typer.Option(None, "--resume", metavar="NAME",
                               help="Continue the stopped or failed run NAME."),
    workers_per_gpu: int = typer.Option(None, help="LFADS workers sharing one GPU (0: CPU "
                                                   "workers; default 3 where the cluster has "
                                                   "GPUs, else 0)."),
    bucket: str = STORAGE,
    address: str = ADDRESS,
    dry_run: bool = DRY,
) -> None:
    """Start `autolfads run` on the cluster as a Ray job; it keeps running after you disconnect.

    Options after `--` go to `autolfads run`, e.g. `-- --population 16 --generations 30`.
    """
    if resume and name and resume != name:
        raise UserInputError(f"--resume {resume} --name {name}: give the run's name once")
    name = resume or name or time.strftime("run-%Y%m%d-%H%M%S")
    c = _cluster(cfg, bucket)
    if workers_per_gpu is not None and workers_per_gpu < 0:
        raise UserInputError(f"--workers-per-gpu {workers_per_gpu}: must be 0 or more")
    run_args = list(ctx.args)
    if data and data.startswith("-"):
        # No DATA given: click put the first option meant for `autolfads run` there.
        run_args, data = [data, *run_args], None
    cmds = lifecycle.submit_commands(c, name, data, run_args, workers_per_gpu=workers_per_gpu,
                                     resume=bool(resume), address=address)
    lifecycle.execute(cmds, dry_run=dry_run, echo=typer.echo)
    if not dry_run:
        typer.echo(f"follow it: autolfads cloud status {cfg} {name} --follow")


@cloud_app.command("status")
def status(
    cfg: Path = CFG,
    name: str = typer.Argument(None, help="Run name (default: every job on the cluster)."),
    follow: bool = typer.Option(False, "--follow", help="Stream the log until the run ends "
                                                        "(Ctrl-C stops watching, not the run)."),
    bucket: str = STORAGE,
    address: str = ADDRESS,
    dry_run: bool = DRY,
) -> None:
    """The cluster's nodes (pending and failed, with why), the run's job and its generation."""
    cmds = lifecycle.status_commands(_cluster(cfg, bucket), name, follow=follow, address=address)
    lifecycle.execute(cmds, dry_run=dry_run, echo=typer.echo)


@cloud_app.command("stop")
def stop(
    cfg: Path = CFG,
    name: str = typer.Argument(..., help="Run name given to `cloud submit`."),
    address: str = ADDRESS,
    dry_run: bool = DRY,
) -> None:
    """Stop a run's job; its completed generations stay (`cloud submit --resume NAME`)."""
    lifecycle.execute(lifecycle.stop_commands(_cluster(cfg), name, address), dry_run=dry_run,
                      echo=typer.echo)


@cloud_app.command("download")
def download(
    cfg: Path = CFG,
    name: str = typer.Argument(..., help="Run name given to `cloud submit`."),
    dest: Path = typer.Option(Path("runs"), "--dest", help="Local folder; the run lands in "
                                                           "DEST/NAME."),
    bucket: str = STORAGE,
    dry_run: bool = DRY,
) -> None:
    """Copy a run's outputs from the cluster's storage to this machine."""
    cmds = lifecycle.download_commands(_cluster(cfg, bucket), name, dest)
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
    """Stop the cluster (GCP: delete its VMs); the run storage and its outputs stay."""
    c = _cluster(cfg, need_storage=False)
    if _confirm_and_execute(lifecycle.down_commands(c), dry_run, yes,
                            "Stop every node of this cluster?", "Nothing stopped.") and c.google:
        typer.echo(_vms_after_down(c))
        typer.echo(_left_after_down(cfg, c))


def _vms_after_down(c: lifecycle.Cluster) -> str:
    """Whether any VM of the cluster outlived `ray down` (an interrupted or failed delete, a
    worker the autoscaler was still creating): each bills until it is deleted."""
    from autolfads.cloud.doctor import run_cmd

    rc, out, err = run_cmd(lifecycle.vms_left_command(c))
    if rc != 0:
        why = (err.strip().splitlines() or [f"exit status {rc}"])[-1]
        return (f"could not list the cluster's VMs ({why}); look for VMs named ray-{c.name}-* "
                f"at https://console.cloud.google.com/compute/instances?project={c.project}")
    vms = lifecycle.vms_left(out)
    if not vms:
        return f"cluster VMs deleted: none of cluster {c.name} is left in project {c.project}."
    listed = ", ".join(f"{name} ({zone}, {status})" for name, zone, status in vms)
    cmds = "; ".join(str(cmd) for cmd in lifecycle.delete_vms_commands(c, vms))
    return (f"warning: {len(vms)} VM(s) of cluster {c.name} still exist and bill until deleted: "
            f"{listed}. Delete them with: {cmds}")


def _left_after_down(cfg: Path, c: lifecycle.Cluster) -> str:
    """What `down` leaves on GCP, and what deletes it."""
    from autolfads.cloud.gcp_setup import leftover_commands

    kept = f"the bucket {c.storage} (your runs)" if c.storage else "the bucket (your runs)"
    try:
        cmds = "; ".join(str(cmd) for cmd in leftover_commands(load_config(cfg)))
    except (KeyError, IndexError, TypeError, AttributeError):  # a YAML edited after `up`
        cmds = "see the README's 'Closed by default' for the gcloud commands"
    return (f"Still there: {kept}, and the network set-up `up` made (a "
            f"firewall rule and a worker account cost nothing; the Cloud NAT bills only while "
            f"VMs use it). To delete that too: {cmds}")


@cloud_app.command("doctor")
def doctor(
    cfg: Path = typer.Argument(Path("cluster.yaml"), help="Cluster YAML to check."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the gcloud commands it runs."),
) -> None:
    """Check this machine and the GCP project for `cloud up`: each problem with its fix."""
    from autolfads.cloud.doctor import run_doctor

    run_doctor(cfg, echo=typer.echo, dry_run=dry_run)
