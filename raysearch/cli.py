"""The `raysearch` command. Thin: parses, prints, and calls the modules that do the work."""

import dataclasses
import os
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from raysearch.spec import SpecError, load_spec, ready_spaces, resolve_space

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hyperparameter search on Ray Tune + Optuna + MLflow for PyTorch models.")
console = Console(soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    # one line, whatever a file's values hold
    typer.echo("error: " + " ".join(message.splitlines()), err=True)
    raise typer.Exit(code)


SetOption = typer.Option(None, "--set", help="Override a key of the file: key.path=value")


@app.command()
def validate(file: str = typer.Argument(..., help="Search-space file, or a ready space's name"),
             set_: list[str] | None = SetOption) -> None:
    """Check a search-space file without running anything."""
    try:
        spec = load_spec(resolve_space(file), set_ or [])
    except SpecError as e:
        fail(str(e))
    read = ""
    from raysearch.data import DATASETS, DataError

    if DATASETS[spec.data.name].user_file:  # the user's data file, checked as a search would
        try:
            splits, info = DATASETS[spec.data.name].load(spec.data_options())
            spec.check_task(info.task)
        except (DataError, SpecError) as e:
            fail(str(e))
        sizes = "/".join(str(len(splits[s][0]) if isinstance(splits[s], tuple)
                             else len(splits[s])) for s in ("train", "val", "test"))
        learnt = {"classification": f"{info.num_outputs} classes", "regression": "regression",
                  "forecasting": f"{info.num_outputs} targets"}[info.task]
        streamed = "" if isinstance(splits["train"], tuple) else ", read memory-mapped"
        read = (f"; {spec.data.options['path']}: {sizes} train/val/test, "
                f"{info.input_shape[-1]} features, {learnt}{streamed}")
    console.print(f"{spec.source}: ok ({spec.models_text()} on {spec.data.name}, "
                  f"{len(spec.params)} searched params, {spec.search.trials} trials{read})",
                  highlight=False)


@app.command()
def spaces() -> None:
    """List the ready search spaces shipped with raysearch."""
    table = Table("space", "model", "data", "objective")
    for path in ready_spaces():
        spec = load_spec(path)
        table.add_row(path.stem, spec.models_text(), spec.data.name,
                      f"{spec.ranking().mode} {spec.ranking().metric}")
    console.print(table)


@app.command()
def tune(
    space: str | None = typer.Option(None, "--space", "-s",
                                     help="Search-space file, or a ready space"),
    resume_: str | None = typer.Option(
        None, "--resume", help="Go on with search NAME in --storage; alone: the last one started"),
    trials: int | None = typer.Option(None, help="Number of trials"),
    workers: int | None = typer.Option(None, help="Ray Train workers per trial"),
    gpus_per_worker: float | None = typer.Option(None, help="GPUs per worker"),
    max_concurrent: int | None = typer.Option(None, help="Trials running at once"),
    set_: list[str] | None = SetOption,
    name: str | None = typer.Option(None, help="Search name (MLflow experiment, model)"),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking URI"),
    storage: str | None = typer.Option(None, help="Where Ray keeps results and checkpoints"),
    address: str | None = typer.Option(
        None, help="Submit to the cluster whose dashboard is here (http://HEAD:8265) as a job"),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Ray's, Tune's, Optuna's and MLflow's own output too"),
) -> None:
    """Run a search: Optuna proposes, ASHA stops early, every trial is a TorchTrainer."""
    from raysearch import resume, tracking
    from raysearch.outbox import fail_fast
    from raysearch.quiet import quiet_libraries
    from raysearch.storage import resolve as resolve_storage

    if not verbose:
        quiet_libraries()

    flags = {"trials": trials, "workers": workers, "gpus_per_worker": gpus_per_worker,
             "max_concurrent": max_concurrent, "name": name}
    flags = {k: v for k, v in flags.items() if v is not None}
    root = resolve_storage(storage or resume.default_storage())
    try:
        if (space is None) == (resume_ is None):
            raise SpecError("tune: give --space FILE for a new search, or --resume [NAME] to go "
                            "on with one")
        if resume_ is not None:
            others = [k for k in flags if k != "trials"]
            if others or set_:
                raise SpecError("--resume: a resumed search keeps its own spec (but for "
                                "--trials, to run more); drop "
                                + ", ".join(f"--{k.replace('_', '-')}" for k in others)
                                + (" --set" if set_ else ""))
            found = resume.find(root, resume_ or None)
            state = resume.load(root, found)
            saved = resume.space_file(root, found)
            spec = load_spec(saved, state.overrides, **{**state.flags, **flags})
            uri, origin = tracking_uri or state.tracking_uri, None
            if flags:  # --trials: more for the search (a finished one too), kept for later
                resume.save(root, found, resume.Origin(saved.read_text(), state.overrides,
                                                       {**state.flags, **flags}),
                            dataclasses.replace(state, flags={**state.flags, **flags}))
        else:
            path = resolve_space(space)
            spec = load_spec(path, set_ or [], **flags)
            uri = tracking.tracking_uri(tracking_uri)
            origin = resume.Origin(path.read_text(), set_ or [], flags)
    except SpecError as e:
        fail(str(e))
    if address:
        if resume_ is not None:
            fail("--resume with --address: resume on the cluster, where the search's state is")
        submit_and_follow(address, path, spec.name, [
            *[f"--{k.replace('_', '-')}={v}" for k, v in flags.items()],
            *[f"--set={item}" for item in set_ or []],
            *([f"--tracking-uri={tracking_uri}"] if tracking_uri else []),
            *([f"--storage={storage}"] if storage else []),
            *(["--verbose"] if verbose else [])])
        return
    from raysearch import search, study
    from raysearch.data import DataError

    try:  # before anything starts: bad data (a user's file) is one line, nothing is written
        data = search.inputs(spec)
        study_url = study.storage_url(spec, root)
    except (DataError, SpecError) as e:
        fail(str(e))
    fail_fast()
    check_tracking(uri)
    from raysearch.warm_start import warm_trials

    try:  # the earlier searches a search warm-starts from, before anything starts
        warm = warm_trials(spec, uri) if resume_ is None else None
    except SpecError as e:
        fail(str(e))

    import logging
    from functools import partial

    import ray

    from raysearch import _ray
    from raysearch.outbox import TrackingDown
    from raysearch.progress import Progress
    from raysearch.quiet import QUIET_LEVEL

    links = []
    started_here = not ray.is_initialized()
    if started_here:
        context = _ray.init(dashboard_host="127.0.0.1", include_dashboard=True,
                            logging_level=logging.INFO if verbose else QUIET_LEVEL)
        started_here = not _ray.joined_cluster()
        if context.dashboard_url:
            # a cluster's dashboard listens on its head's localhost (cluster.yaml)
            joined = ("   (from your machine: `ray dashboard cluster.yaml` tunnels to it)"
                      if _ray.joined_cluster() else "")
            links.append(f"Ray dashboard: http://{context.dashboard_url}{joined}")
    links += [f"MLflow: {uri}   (open it: mlflow ui --backend-store-uri {uri})",
              f"TensorBoard: tensorboard --logdir {root}/{spec.name}",
              f"Optuna dashboard: {study.dashboard_command(study_url)}"]
    live = console.is_terminal and not verbose
    if not live:
        for link in links:
            console.print(link, highlight=False)
    progress = partial(Progress, spec, console=console, live=live, links=tuple(links))
    try:
        outcome = search.run(spec, uri, root, origin=origin, resuming=resume_ is not None,
                             progress=progress, verbose=verbose, data=data, warm=warm)
    except (SpecError, DataError) as e:
        fail(str(e))
    except TrackingDown as e:
        fail(f"{e}: the search's trials and checkpoints are kept in {root}/{spec.name}, but the "
             "champion was not registered", 1)
    except search.Interrupted:
        again = f"raysearch tune --resume {spec.name}" + (f" --storage {root}" if storage else "")
        typer.echo(f"interrupted; finished trials are kept. Go on with: {again}", err=True)
        raise typer.Exit(130) from None
    show(outcome, spec)
    if started_here:
        shut_down(ray)
    failed = outcome.count("failed")
    if outcome.best is None and outcome.errors and failed == len(outcome.states):
        trial_id, reason = next(iter(outcome.errors.items()))
        fail(f"every trial failed; the first, trial {trial_id}: {reason}", 1)
    if outcome.best is None and spec.several() and not outcome.front:
        fail("no trial ran to max_t, so the Pareto front is empty: nothing was registered", 1)
    if outcome.best is None and spec.champion_bounds():
        fail("no trial meets " + " and ".join(map(str, spec.champion_bounds()))
             + (" on the Pareto front" if spec.several() else "") + ": nothing was registered", 1)
    if outcome.best is None:
        fail("no trial reported the objective", 1)


def submit_and_follow(address: str, spec_file: Path, name: str, args: list[str]) -> None:
    """Submit the search as a Ray job and stream its logs; Ctrl-C detaches, the job runs on."""
    from raysearch import remote

    try:
        client = remote.connect(address)
        job_id = remote.submit(client, spec_file, name, args)
    except remote.ClusterError as e:
        fail(str(e))
    console.print(f"job {job_id} submitted; Ray dashboard: {address}  (jobs: "
                  f"raysearch jobs --address {address})")
    console.print("MLflow: the cluster's MLFLOW_TRACKING_URI, or the --tracking-uri given")
    sys.stdout.flush()  # the job id, before the job's own output
    try:
        status = remote.follow(client, job_id, lambda text: print(text, end="", flush=True))
    except KeyboardInterrupt:
        typer.echo(f"\ndetached; job {job_id} runs on. Follow it: raysearch logs {job_id} "
                   f"--follow --address {address}", err=True)
        return
    console.print(f"job {job_id}: {status}")
    if status != "SUCCEEDED":
        raise typer.Exit(1)


AddressOption = typer.Option(..., "--address", envvar="RAY_DASHBOARD_ADDRESS",
                             help="The cluster's dashboard, http://HEAD:8265")


@app.command()
def jobs(address: str = AddressOption) -> None:
    """List raysearch's jobs on a cluster, newest first, with the best metric so far."""
    from raysearch import remote

    try:
        rows = remote.jobs(remote.connect(address))
    except remote.ClusterError as e:
        fail(str(e))
    table = Table("job", "status", "search", "best so far")
    for row in rows:
        table.add_row(row["id"], row["status"], row["name"], row["best"])
    console.print(table)


@app.command()
def logs(job: str = typer.Argument(..., help="Job id, as `raysearch jobs` lists it"),
         address: str = AddressOption,
         follow: bool = typer.Option(False, "--follow", "-f", help="Go on until the job ends")
         ) -> None:
    """Print a job's logs."""
    from raysearch import remote

    try:
        client = remote.connect(address)
        if follow:
            remote.follow(client, job, lambda text: print(text, end="", flush=True))
        else:
            print(client.get_job_logs(job), end="")
    except remote.ClusterError as e:
        fail(str(e))
    except RuntimeError as e:  # the Jobs API's answer for an unknown job
        fail(f"{job}: {str(e).splitlines()[0]}")


STOP_WAIT_S = 120  # how long `raysearch stop` waits to say the job stopped


@app.command()
def stop(job: str = typer.Argument(..., help="Job id, as `raysearch jobs` lists it"),
         address: str = AddressOption) -> None:
    """Stop a job as Ctrl-C stops a search: Tune saves it, the running trials' runs are marked
    interrupted, finished trials stay in MLflow and the storage."""
    from raysearch import remote

    try:
        client = remote.connect(address)
        client.stop_job(job)
        # a stopping search saves Tune's state, marks its runs and stops its pools: seconds on
        # a quiet head, more than 30 on a busy one (2 cores running the trials)
        status = remote.wait(client, job, timeout_s=STOP_WAIT_S)
        console.print(f"job {job}: {status}" + ("" if status in ("STOPPED", "SUCCEEDED", "FAILED")
                                                 else " (still stopping: see raysearch jobs)"))
    except remote.ClusterError as e:
        fail(str(e))
    except RuntimeError as e:
        fail(f"{job}: {str(e).splitlines()[0]}")


def check_tracking(uri: str) -> None:
    """Reach the tracking store before any trial starts."""
    from mlflow import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001  any failure here means the store is unusable
        fail(f"cannot reach the MLflow tracking store {uri}: {str(e).splitlines()[0]}")


def show(outcome, spec) -> None:
    from raysearch.costs import COST_METRICS
    from raysearch.job import TrialState

    mode = spec.ranking().mode
    console.rule(f"search {outcome.name}")
    console.print(f"trials: {outcome.count(TrialState.COMPLETED)} completed, "
                  f"{outcome.count(TrialState.STOPPED_EARLY)} stopped early, "
                  f"{outcome.count(TrialState.FAILED)} failed")
    if outcome.budget_ended:
        console.print(f"the time budget ended the search: {len(outcome.states)} of "
                      f"{spec.search.trials} trials ran (search.time_budget_s = "
                      f"{spec.search.time_budget_s:g} s)", highlight=False)
    for trial_id, reason in outcome.errors.items():
        console.print(f"[red]failed[/] trial {trial_id}: {reason}", highlight=False)
    if outcome.front:
        show_front(outcome, spec)
    best = outcome.best
    if best is None:
        console.print("[red]no trial is champion; nothing was registered[/]")
        return
    console.print(f"best: trial {best.trial_id}, {outcome.metric} = {best.value:.6g} "
                  f"({mode}) at epoch {best.epoch}")
    if outcome.families:
        console.print("best of each model: " + ", ".join(
            f"{family} {top.value:.6g} (trial {top.trial_id}, of {top.trials})"
            for family, top in outcome.families.items()), highlight=False)
    c = best.costs
    if len(c) == len(COST_METRICS):
        console.print(f"its cost: {c['params_total']:,.0f} weights ({c['params_trainable']:,.0f} "
                      f"trained), {c['latency_ms']:.3g} ms per input, {c['throughput']:,.0f} "
                      f"inputs/s, training peak {c['peak_memory_mb']:.3g} MB, "
                      f"{c['trial_s']:.3g} s", highlight=False)
    table = Table("param", "value")
    for key, value in best.config.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    console.print(table)
    if outcome.test_metrics:
        console.print("test: " + ", ".join(f"{k} = {v:.6g}"
                                           for k, v in outcome.test_metrics.items()))
    promo = outcome.promotion
    if promo:
        verdict = ("now champion" if promo.champion
                   else f"champion stays version {promo.previous}")
        console.print(f"registered: {outcome.name} version {promo.version} ({verdict})")
        console.print(f"fetch it: raysearch pull {outcome.name}@champion --out DIR")
    if outcome.report:
        console.print(f"report: {outcome.report}   (again, or several searches compared: "
                      f"raysearch report {outcome.name} ...)", highlight=False)


def show_front(outcome, spec) -> None:
    """The Pareto front, best on the champion's metric first."""
    bounds = spec.champion_bounds()
    metrics = [o.metric for o in spec.objective]
    table = Table("trial", *(f"{o.metric} ({o.mode})" for o in spec.objective),
                  *(["meets " + " and ".join(map(str, bounds))] if bounds else []), "",
                  title=f"Pareto front: {len(outcome.front)} of the trials that ran to max_t "
                  "(tagged raysearch.pareto = true in MLflow)")
    ranking = spec.ranking()
    sign = -1 if ranking.mode == "max" else 1
    for trial in sorted(outcome.front, key=lambda t: sign * t.values[ranking.metric]):
        champion = outcome.best is not None and trial.trial_id == outcome.best.trial_id
        table.add_row(trial.trial_id, *(f"{trial.values[m]:.6g}" for m in metrics),
                      *(["yes" if trial.meets else "no"] if bounds else []),
                      "champion" if champion else "")
    console.print(table)


def shut_down(ray) -> None:
    """Ray's own shutdown, once no actor is still being created: a worker that is creating one
    when the raylet exits dies on a failed check (ActorCreationTaskDone) and prints a C++
    stack trace after a search that succeeded."""
    import time

    from ray.util.state import list_actors

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            # neither alive nor dead: pending creation, its arguments not ready, restarting
            creating = list_actors(filters=[("state", "!=", "ALIVE"), ("state", "!=", "DEAD")],
                                   raise_on_missing_output=False)
        except Exception:  # noqa: BLE001  no state API (no dashboard): nothing to wait on
            break
        if not creating:
            break
        time.sleep(0.2)
    ray.shutdown()


class Format(str, Enum):
    csv = "csv"
    json = "json"


@app.command()
def report(
    names: list[str] = typer.Argument(..., help="Search names; several on one data set are "
                                                "compared"),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Folder to write to [default: reports/NAME]"),
    fmt: Format = typer.Option(Format.csv, "--format", help="The trials table's format"),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking URI"),
) -> None:
    """A search's report.html (Optuna's plots, learning curves, the champion's diagnostics) and
    trials table; for several searches, comparison.html."""
    from mlflow import MlflowClient

    from raysearch import report as reports
    from raysearch import tracking
    from raysearch.quiet import quiet_libraries

    quiet_libraries()
    uri = tracking.tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    out = out or Path("reports") / "_vs_".join(dict.fromkeys(names))
    try:
        records = [reports.load(client, name) for name in dict.fromkeys(names)]
        files = reports.write(client, records, out, fmt.value)
    except reports.ReportError as e:
        fail(str(e))
    for file in files:
        console.print(str(file), highlight=False)


@app.command()
def pull(
    ref: str = typer.Argument(..., help="NAME, NAME@alias or NAME/version"),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the model to"),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking URI"),
) -> None:
    """Fetch a registered model; raysearch.load(DIR) rebuilds it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from raysearch import tracking
    from raysearch.checkpoint import CheckpointError

    uri = tracking.tracking_uri(tracking_uri)
    try:
        folder, version = tracking.pull(MlflowClient(uri), ref, out)
    except MlflowException as e:
        fail(f"{ref}: {e.message.splitlines()[0]}")
    except CheckpointError as e:
        fail(str(e))
    console.print(f"{version.name} version {version.version} -> {folder}")


@app.command()
def predict(
    ref: str = typer.Argument(..., help="NAME, NAME@alias or NAME/version"),
    input_: Path = typer.Option(..., "--input", "-i", help=".npy, .npz or .csv of inputs"),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help=".csv or .npy to write; CSV on stdout without it"),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking URI"),
) -> None:
    """Predictions of a registered model for the inputs in a file."""
    import tempfile

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from raysearch import tracking
    from raysearch.checkpoint import CheckpointError
    from raysearch.predict import InputError, predict_file

    uri = tracking.tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tracking.quietly():  # no download progress bars around the predictions
                folder, version = tracking.pull(MlflowClient(uri), ref, Path(tmp) / "model")
            predictions = predict_file(folder, input_, out)
        except MlflowException as e:
            fail(f"{ref}: {e.message.splitlines()[0]}")
        except (CheckpointError, InputError) as e:
            fail(str(e))
    if out is not None:
        n = len(predictions)
        typer.echo(f"{version.name} version {version.version}: predictions for {n} "
                   f"input{'s' if n != 1 else ''} -> {out}", err=True)


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    app(args=with_resume_value(sys.argv[1:]))


def with_resume_value(args: list[str]) -> list[str]:
    """`--resume` with no NAME after it means the last search: typer has no options whose value
    is optional, so an empty NAME is put in."""
    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--resume" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append("")
    return out


if __name__ == "__main__":
    main()
