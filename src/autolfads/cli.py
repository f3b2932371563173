"""The `autolfads` command (DESIGN.md §2).

Bad input of any kind ends in one `error: ...` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer

from autolfads.cloud.cli import cloud_app
from autolfads.errors import RunFailed, RunInterrupted, UserInputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="AutoLFADS: single-trial rates, factors and inputs from spiking data.")
synth_app = typer.Typer(no_args_is_help=True, help="Write a built-in synthetic dataset.")
app.add_typer(synth_app, name="synth")
app.add_typer(cloud_app, name="cloud")

# Options `train` and `run` share (typer reads these defaults; one object serves both).
DATA = typer.Argument(None, help="Data file (.mat, .h5 incl. NLB tensors, .npz, .nwb), a path "
                      "or a gs:// / s3:// URI; default: built-in Lorenz.")
CONFIG = typer.Option(None, "--config", help="YAML config file.")
SET = typer.Option(None, "--set", help="Override a config key, e.g. --set model.gen_dim=100 "
                   "(repeatable).")
LAYOUT = typer.Option(None, "--layout", help="Axis order of the data variable, e.g. "
                      "neurons_time_trials (the .mat default) or trials_time_neurons.")
FORCE = typer.Option(False, "--force", help="Replace an earlier run in --out.")
QUIET = typer.Option(False, "--quiet", "-q", help="Only the final summary.")


def _overrides(set_: list[str] | None, layout: str | None) -> list[str]:
    return list(set_ or []) + ([f"data.layout={layout}"] if layout else [])


@synth_app.command("lorenz")
def synth_lorenz(
    out: Path = typer.Option(..., "--out", help="File to write (.h5 or .mat)."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
    fmt: str = typer.Option(None, "--format", help="h5 or mat (default: from the file name)."),
) -> None:
    """Synthetic Lorenz dataset with ground-truth rates (the built-in demo data)."""
    ds = _write_synth("lorenz", out, seed, fmt)
    typer.echo(f"wrote {out}: {ds.summary()}, true rates included")


def _write_synth(kind: str, out: Path, seed: int, fmt: str | None, **params):
    """api.synth to a new file, after the checks both synth commands share."""
    from autolfads.api import synth
    from autolfads.data.writers import dataset_format

    fmt = dataset_format(out, fmt)  # from the extension, which must match --format
    if out.exists():
        raise UserInputError(f"--out {out}: file exists; remove it or choose another name")
    return synth(kind, seed=seed, out=out, fmt=fmt, **params)


@synth_app.command("chaotic_rnn")
def synth_chaotic_rnn(
    out: Path = typer.Option(..., "--out", help="File to write (.h5 or .mat)."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
    units: int = typer.Option(50, help="Network units."),
    gain: float = typer.Option(1.5, help="Recurrent gain (above 1: chaotic)."),
    pulse: float = typer.Option(50.0, help="Input pulse amplitude (0: no input)."),
    neurons: int = typer.Option(50, help="Poisson neurons."),
    trials: int = typer.Option(400, help="Trials."),
    bins: int = typer.Option(100, help="10 ms bins per trial."),
    fmt: str = typer.Option(None, "--format", help="h5 or mat (default: from the file name)."),
) -> None:
    """Chaotic RNN with one input pulse per trial; true rates and input times included."""
    ds = _write_synth("chaotic_rnn", out, seed, fmt, units=units, gain=gain, pulse=pulse,
                      neurons=neurons, trials=trials, bins=bins)
    typer.echo(f"wrote {out}: {ds.summary()}, true rates and input times included")


@synth_app.command("emg")
def synth_emg(
    out: Path = typer.Option(..., "--out", help="File to write (.h5 or .mat)."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
    channels: int = typer.Option(16, help="EMG channels (muscles)."),
    conditions: int = typer.Option(20, help="Conditions (Lorenz initial states)."),
    trials_per_condition: int = typer.Option(10, help="Trials per condition."),
    bins: int = typer.Option(50, help="10 ms bins per trial."),
    shape: float = typer.Option(4.0, help="Gamma shape (noise: CV = 1/sqrt(shape))."),
    fmt: str = typer.Option(None, "--format", help="h5 or mat (default: from the file name)."),
) -> None:
    """Lorenz-driven EMG-like data: Gamma-distributed envelopes; true means included."""
    ds = _write_synth("emg", out, seed, fmt, channels=channels, conditions=conditions,
                      trials_per_condition=trials_per_condition, bins=bins, shape=shape)
    typer.echo(f"wrote {out}: {ds.summary()}, true means included")


@synth_app.command("calcium")
def synth_calcium(
    out: Path = typer.Option(..., "--out", help="File to write (.h5 or .mat)."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
    neurons: int = typer.Option(40, help="Neurons."),
    conditions: int = typer.Option(20, help="Conditions (Lorenz initial states)."),
    trials_per_condition: int = typer.Option(10, help="Trials per condition."),
    bins: int = typer.Option(100, help="Frames per trial."),
    frame_rate_hz: float = typer.Option(30.0, help="Imaging frame rate."),
    noise: float = typer.Option(0.1, help="Noise SD (dF/F)."),
    fmt: str = typer.Option(None, "--format", help="h5 or mat (default: from the file name)."),
) -> None:
    """Lorenz-driven calcium imaging: spikes -> indicator (rise, decay) -> dF/F with noise; true
    spike rates included. Deconvolve it (autolfads deconvolve) before training."""
    ds = _write_synth("calcium", out, seed, fmt, neurons=neurons, conditions=conditions,
                      trials_per_condition=trials_per_condition, bins=bins,
                      frame_rate_hz=frame_rate_hz, noise=noise)
    typer.echo(f"wrote {out}: {ds.summary()}, true spike rates included")


@app.command()
def deconvolve(
    data: str = typer.Argument(..., help="Calcium dF/F traces (.mat, .h5, .npz)."),
    out: Path = typer.Option(..., "--out", help="Events file to write (.h5 or .mat)."),
    layout: str = LAYOUT,
    variable: str = typer.Option("data", help="Variable holding the traces (.mat/.npz)."),
    tau_decay_s: float = typer.Option(None, help="Indicator decay time constant in seconds "
                                      "(default: estimated per neuron)."),
    threshold_sd: float = typer.Option(1.0, help="Events below this many noise SDs become 0."),
    bin_size_ms: float = typer.Option(None, help="Frame interval, if the file does not say."),
) -> None:
    """Deconvolve calcium traces into event amplitudes (OASIS), keeping trials and their order
    (a 2-D recording is deconvolved whole and stays one); train on the events (observation
    model: zero_inflated_gamma, which auto picks)."""
    from autolfads.api import deconvolve as deconvolve_api
    from autolfads.data.deconvolve import DeconvolveOptions

    options = {"variable": variable, **({"layout": layout} if layout else {}),
               **({"bin_size_ms": bin_size_ms} if bin_size_ms is not None else {})}
    ds = deconvolve_api(data, out, DeconvolveOptions(tau_decay_s, threshold_sd),
                        **options)
    zeros = float((ds.all_data() == 0).mean())
    typer.echo(f"wrote {out}: {ds.summary()}, events in {100 * (1 - zeros):.0f}% of bins")
    if ds.segments is not None:
        typer.echo(f"{out} holds the events as one recording, neurons x time (its `layout` "
                   "says so): train on it without --layout")
    elif layout and out.suffix.lower() == ".mat":  # the tutorial's order, whatever came in
        typer.echo(f"{out} holds the events as neurons x time x trials (its `layout` variable "
                   "says so): train on it without --layout")


@app.command()
def train(
    data: str = DATA,
    out: str = typer.Option(..., "--out", help="Run directory to create (local), or to "
                            "--resume."),
    epochs: int = typer.Option(None, help="Maximum epochs (default from config: train.epochs)."),
    seed: int = typer.Option(None, help="Random seed (train.seed)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted training in "
                                "--out from its last epoch."),
    config: Path = CONFIG,
    set_: list[str] = SET,
    layout: str = LAYOUT,
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Train one LFADS model with fixed hyperparameters; write rates, factors, inputs, metrics."""
    from autolfads.api import summary_line
    from autolfads.api import train as train_api

    if resume and force:
        raise UserInputError("--resume and --force: choose one (continue the run, or replace it)")
    res = train_api(data, out, config=config, overrides=_overrides(set_, layout), epochs=epochs,
                    seed=seed, resume=resume, force=force, quiet=quiet)
    if quiet:
        typer.echo(summary_line(res.metrics, res.out))


@app.command()
def run(
    data: str = DATA,
    # str, not Path: Path would turn gs://bucket/run into gs:/bucket/run.
    out: str = typer.Option(..., "--out", help="Run directory or bucket URI (gs://, s3://) to "
                            "create, or to --resume."),
    population: int = typer.Option(None, help="Number of LFADS workers (pbt.population)."),
    generations: int = typer.Option(None, help="Maximum generations (pbt.generations)."),
    epochs_per_generation: int = typer.Option(None, help="Epochs per generation."),
    address: str = typer.Option(None, help="Ray cluster address; default: local Ray."),
    workers_per_gpu: int = typer.Option(None, help="Workers sharing one GPU (0 = CPU only)."),
    cpus_per_worker: float = typer.Option(None, help="CPU cores per worker."),
    max_failures: int = typer.Option(None, help="Restarts of a failed worker before it is "
                                     "dropped (pbt.max_failures, default 20; -1: no limit)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    seed: int = typer.Option(None, help="PBT random seed (pbt.seed)."),
    config: Path = CONFIG,
    set_: list[str] = SET,
    layout: str = LAYOUT,
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """AutoLFADS: tune LFADS hyperparameters by Population Based Training on Ray Tune."""
    from autolfads.api import run as run_api
    from autolfads.api import summary_line

    if resume and force:
        raise UserInputError("--resume and --force: choose one (continue the run, or replace it)")
    res = run_api(data, out, population=population, generations=generations,
                  epochs_per_generation=epochs_per_generation, address=address,
                  workers_per_gpu=workers_per_gpu, cpus_per_worker=cpus_per_worker,
                  max_failures=max_failures, config=config, overrides=_overrides(set_, layout),
                  seed=seed, resume=resume, force=force, quiet=quiet)
    if quiet:
        typer.echo(summary_line(res.metrics, res.out))


@app.command()
def status(
    run_dir: str = typer.Argument(..., metavar="DIR", help="Run directory (local, gs://, s3://)."),
    all_generations: bool = typer.Option(False, "--all", help="Every generation, not the latest."),
) -> None:
    """Table of the population: score, hyperparameters, exploits; best so far; stop progress."""
    from autolfads.analysis.status import status as show

    show(run_dir, all_generations=all_generations)


@app.command()
def report(
    run_dir: str = typer.Argument(..., metavar="DIR", help="Run directory (local, gs://, s3://)."),
) -> None:
    """Write DIR/report/index.html: summary, hyperparameters, trials, latents, metrics."""
    from autolfads.analysis.report import write_report
    from autolfads.rundir.layout import is_uri

    index = write_report(run_dir)
    if is_uri(run_dir):
        typer.echo(f"wrote {run_dir.rstrip('/')}/report/index.html (to open here: {index})")
    else:
        typer.echo(f"wrote {index}")


@app.command()
def export(
    run_dir: str = typer.Argument(..., metavar="DIR", help="Run directory (local, gs://, s3://)."),
    fmt: str = typer.Option(..., "--format", help="mat, h5 or npz."),
    out: str = typer.Option(None, "--out", help="File to write (default "
                             "DIR/output/lfads_output.<format>)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Re-export the outputs (.mat: neurons x time x trials, original order, 1-based indices)."""
    from autolfads.analysis.export import export as do_export

    typer.echo(f"wrote {do_export(run_dir, fmt, out, force)}")


def main() -> None:
    # A scheduler's or `kill`'s SIGTERM ends a run as Ctrl-C does: whatever handles SIGINT at
    # that moment (Ray Tune's, during a PBT run) stops it cleanly and says how to resume.
    try:
        previous = signal.signal(signal.SIGTERM,
                                 lambda *_: os.kill(os.getpid(), signal.SIGINT))
    except ValueError:  # not the main thread: signals are not ours to handle
        previous = None
    try:
        _run_app()
    finally:  # the process may go on (tests call main): leave SIGTERM as it was
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_app() -> None:
    try:
        code = app(standalone_mode=False)
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except RunInterrupted as e:
        print(str(e), file=sys.stderr)
        sys.exit(130)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as e:  # a usage mistake: a missing or unknown option, a typo
        sys.exit(_usage_error(e))
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if not out_of_memory(e):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        print(f"error: out of memory ({first}); use a smaller model (model.gen_dim, "
              "model.con_dim, ...), train.batch_size or train.n_samples, or on a GPU fewer "
              "--workers-per-gpu (a run whose training finished: --resume with a smaller "
              "train.n_samples)", file=sys.stderr)
        sys.exit(1)
    if isinstance(code, int) and code:  # without standalone mode typer returns, e.g., Ctrl-C's 130
        if code == 130:
            print("interrupted", file=sys.stderr)
        sys.exit(code)


def out_of_memory(e: BaseException) -> bool:
    """numpy's MemoryError, torch's CPU allocator failing, or CUDA out of memory."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or any(
        w in text for w in ("out of memory", "can't allocate memory", "not enough memory"))


def _usage_error(e: Exception) -> int:
    """One `error:` line for a command-line mistake (typer's own exceptions, e.g. a missing
    --out or a misspelt command), naming the help to read; the exit status."""
    if type(e).__name__ == "NoArgsIsHelpError":  # bare `autolfads`: the help is printed
        return 0
    msg = e.format_message() if hasattr(e, "format_message") else str(e)
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "autolfads"
    print(f"error: {' '.join(msg.split())} (see {where} --help)", file=sys.stderr)
    return int(getattr(e, "exit_code", 2) or 2)


if __name__ == "__main__":
    main()
