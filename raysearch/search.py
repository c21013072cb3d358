"""Runs one search: Ray Tune with OptunaSearch and ASHA over trials that train on the search's
warm TorchTrainer pools, tracked in MLflow, the best checkpoint promoted to the registry."""

import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import ray.train
from mlflow import MlflowClient
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter

from raysearch import _ray, checkpoint, pareto, report, resume, study, tracking
from raysearch.costs import COST_METRICS
from raysearch.data import DATASETS
from raysearch.diagnostics import diagnose
from raysearch.dispatch import Dispatcher
from raysearch.early_stop import PostingASHA, rungs
from raysearch.evaluate import evaluate, input_example
from raysearch.job import ENDED, SearchSetup, TrialState, Unsaved
from raysearch.models import MODELS
from raysearch.outbox import TrackingDown, fail_fast, unreachable
from raysearch.pool import EndedTrials, Pools
from raysearch.space import DefineByRun, make_sampler
from raysearch.spec import FAMILY, CategoricalParam, Spec, SpecError
from raysearch.spec.sections import Bound
from raysearch.storage import filesystem, first_line, shared
from raysearch.storage import problem as storage_problem
from raysearch.storage import resolve as resolve_storage
from raysearch.study import StudySearch
from raysearch.trial import trainable
from raysearch.trial_checkpoints import TrialCheckpoints
from raysearch.warm_start import WarmTrials, warm_trials


@dataclass(frozen=True)
class Best:
    """The best report of any trial whose checkpoint was kept."""

    trial_id: str
    config: dict[str, Any]
    value: float
    epoch: int
    checkpoint: str  # its path in the storage's file system
    costs: dict[str, float] = field(default_factory=dict)  # costs.COST_METRICS, at that epoch


@dataclass(frozen=True)
class FamilyBest:
    """A model family's best report in a search across families."""

    trial_id: str
    value: float
    trials: int  # the family's trials that reported the objective


@dataclass
class Outcome:
    name: str
    metric: str
    best: Best | None
    states: dict[str, TrialState]  # trial id -> how it ended
    errors: dict[str, str] = field(default_factory=dict)  # failed trial id -> why, first first
    promotion: tracking.Promotion | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    parent_run_id: str = ""
    max_concurrent: int = 1
    report: str | None = None  # the report page's path in the storage
    budget_ended: bool = False  # search.time_budget_s passed before every trial had started
    # a search across model families: each family's best, the best family first
    families: dict[str, FamilyBest] = field(default_factory=dict)
    # several objectives: the Pareto front of the trials that ran to the end
    front: list[pareto.FrontTrial] = field(default_factory=list)

    def count(self, state: TrialState | str) -> int:
        return sum(1 for s in self.states.values() if s == state)


def setup_of(spec: Spec, storage: str, data_ref: ray.ObjectRef) -> SearchSetup:
    sch, res = spec.scheduler, spec.resources
    return SearchSetup(
        name=spec.name, model=spec.model, data_ref=data_ref, max_t=sch.max_t,
        metric=spec.ranking().metric, mode=spec.ranking().mode,
        train_storage=f"{storage}/{spec.name}/train",
        rungs=tuple(rungs(sch.max_t, sch.grace_period, sch.reduction_factor)
                    if sch.type == "asha" else ()),
        workers=res.workers, cpus_per_worker=res.cpus_per_worker,
        gpus_per_worker=res.gpus_per_worker, max_failures=res.max_failures,
        start_timeout_s=res.start_timeout_s, reuse_workers=res.reuse_workers)


def inputs(spec: Spec) -> tuple:
    """What a search reads before anything starts: the files its model family needs
    (pretrained weights) and its data set, as (splits, DataInfo). Raises DataError, naming the
    file and what is wrong with it, or SpecError for an objective the data's task does not
    report."""
    choices = {name: p.choices for name, p in spec.params.items()
               if isinstance(p, CategoricalParam)}
    for family in spec.families():
        if prepare := MODELS[family].prepare:
            prepare(spec.fixed, choices)
    splits, info = DATASETS[spec.data.name].load(spec.data_options())
    spec.check_task(info.task)
    return splits, info


def concurrency(spec: Spec) -> int:
    """Trials that fit in the cluster at once, at most `max_concurrent`. On a cluster this
    driver started (a laptop) none fitting is an error rather than trials that wait forever for
    workers; a cluster the driver joined may add nodes (an autoscaler, cluster/*.yaml), and
    `resources.start_timeout_s` bounds each trial's wait for them."""
    res, total = spec.resources, ray.cluster_resources()
    started_here = not _ray.joined_cluster()
    fits = []
    for kind, each in (("CPU", res.cpus_per_worker), ("GPU", res.gpus_per_worker)):
        need = res.workers * each
        if need > 0:
            have = total.get(kind, 0)
            if need > have + 1e-9:
                short = (f"{spec.source}: resources: a trial needs {need:g} {kind} "
                         f"({res.workers} workers x {each:g}) but the Ray cluster has "
                         f"{have:g} {kind}")
                if started_here:
                    raise SpecError(short)
                print(f"warning: {short} now: its trials wait up to {res.start_timeout_s:g} s "
                      "(resources.start_timeout_s) for the autoscaler to add nodes",
                      file=sys.stderr)
                continue
            fits.append(int(have // need + 1e-9))
    return max(1, min([spec.search.max_concurrent, *fits]))


def make_scheduler(spec: Spec, dispatcher: "ray.actor.ActorHandle",
                   stopped_early: set[str]) -> TrialScheduler:
    """`stopped_early`: the search's set of trials stopped before max_t, which ASHA adds to."""
    sch = spec.scheduler
    if sch.type == "none":
        return FIFOScheduler()
    # Epochs, not Tune's count of reports: a resumed trial's count starts again at 1.
    return PostingASHA(dispatcher, time_attr="epoch", max_t=sch.max_t,
                       stopped_early=stopped_early, grace_period=sch.grace_period,
                       reduction_factor=sch.reduction_factor,
                       objectives=[(o.metric, o.mode) for o in spec.objective])


def make_searcher(spec: Spec, storage: str, stopped_early: set[str], resuming: bool,
                  warm: WarmTrials | None, unsaved: dict[str, Unsaved] | None = None
                  ) -> StudySearch:
    """Optuna, with the search's own study (study.py); `stopped_early`: make_scheduler's set;
    `warm`: the earlier searches' trials it starts from (warm_start.py); `unsaved`: what it
    fills, resumed, with the trials Tune never saved that ended."""
    several = spec.several()
    return StudySearch(study.storage_url(spec, storage), spec.name, stopped_early,
                       fresh=not resuming, budget_s=spec.search.time_budget_s, warm=warm,
                       families=() if spec.model else spec.families(), bounds=spec.bounds(),
                       trials=spec.search.trials, unsaved=unsaved,
                       space=DefineByRun(spec),
                       metric=[o.metric for o in spec.objective] if several
                       else spec.ranking().metric,
                       mode=[o.mode for o in spec.objective] if several else spec.ranking().mode,
                       sampler=make_sampler(spec))


def build_tuner(spec: Spec, dispatcher: "ray.actor.ActorHandle", storage: str,
                max_concurrent: int, scheduler: TrialScheduler, searcher: StudySearch,
                callbacks: list[tune.Callback], resuming: bool = False, verbose: bool = False
                ) -> tune.Tuner:
    metric, mode = spec.ranking().metric, spec.ranking().mode
    searcher = _ray.TrialsToRun(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
                                spec.search.trials)
    tune_config = tune.TuneConfig(
        metric=metric, mode=mode, search_alg=searcher, scheduler=scheduler,
        num_samples=spec.search.trials,
        # The next trial runs in the last one's actor: no actor teardown and start between
        # trials (about 4 s each on 2 cores).
        reuse_actors=True,
        # the same name as the trial's checkpoint folder, for its Tune folder too (its result
        # files, its TensorBoard events), rather than Tune's name made of rounded params
        trial_name_creator=lambda t: f"{spec.name}-{t.trial_id}",
        trial_dirname_creator=lambda t: f"{spec.name}-{t.trial_id}")
    # raysearch's own view (progress.py) in place of Tune's per-trial tables, unless -v. Tune's
    # new output engine prints its experiment box and a TensorBoard hint naming a staging
    # folder even at verbose=0; the legacy engine (RAY_AIR_NEW_OUTPUT=0) at 0 prints nothing.
    if not verbose:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    run_config = tune.RunConfig(name=spec.name, storage_path=storage, callbacks=callbacks,
                                verbose=None if verbose else 0)
    if not resuming:
        return tune.Tuner(trainable(dispatcher), tune_config=tune_config, run_config=run_config)
    # Finished trials stay finished, unfinished ones start again (in a pool, from the latest
    # checkpoint in their folder) and the searcher's state is reloaded from the experiment
    # folder, with this driver's scheduler and callbacks in place of the pickled ones.
    return _ray.restore_with(tune.Tuner.restore(f"{storage}/{spec.name}", trainable(dispatcher)),
                             tune_config, run_config)


def best_of(results: Sequence[tune.Result], metric: str, mode: str, storage: str,
            bounds: Sequence[Bound] = ()) -> Best | None:
    """The best report of any trial (ASHA compares trials at equal epochs, so the best value can
    be an earlier epoch than a trial's last) that meets `bounds` and whose checkpoint Ray Train
    kept. It keeps one best and the latest; of two epochs with the same score it may keep
    either."""
    fs, _ = filesystem(storage)
    best = None
    for result in results:
        frame = result.metrics_dataframe
        if result.error or frame is None or metric not in frame or "checkpoint_path" not in frame:
            continue
        frame = frame.dropna(subset=[metric, "checkpoint_path"]).sort_values(
            metric, ascending=mode == "min", kind="stable")
        if bounds:
            frame = frame[[all(b.excess(row) <= 0 for b in bounds)
                           for row in frame.to_dict("records")]]
        # best first: the first kept checkpoint is usually the first looked at (one request per
        # trial, not one per epoch, in a bucket)
        row = next((row for _, row in frame.iterrows()
                    if fs.get_file_info(row["checkpoint_path"]).type
                    != pyarrow.fs.FileType.NotFound), None)
        if row is None:
            continue
        value = float(row[metric])
        if best is None or tracking.better(value, best.value, mode):
            costs = {k: float(row[k]) for k in COST_METRICS if k in row and math.isfinite(row[k])}
            best = Best(result.metrics["trial_id"], result.config, value, int(row["epoch"]),
                        row["checkpoint_path"], costs)
    return best


def front_of(spec: Spec, results: Sequence[tune.Result], states: Mapping[str, TrialState]
             ) -> list[pareto.FrontTrial]:
    """The Pareto front of the trials that ran to max_t (pareto.py)."""
    ended = [pareto.Ended(r.metrics["trial_id"], r.metrics) for r in results
             if not r.error and r.metrics and states.get(r.metrics.get("trial_id"))
             == TrialState.COMPLETED]
    return pareto.front(ended, spec.objective, spec.champion_bounds())


def champion_of(spec: Spec, results: Sequence[tune.Result], on_front: list[pareto.FrontTrial]
                ) -> Best | None:
    """The champion rule's pick of the front, at its last epoch (a trial keeps its latest
    checkpoint)."""
    pick = pareto.champion(on_front, spec.ranking())
    if pick is None:
        return None
    result = next(r for r in results if r.metrics.get("trial_id") == pick.trial_id)
    last = result.metrics
    if "checkpoint_path" not in last:
        return None
    costs = {k: float(last[k]) for k in COST_METRICS if k in last and math.isfinite(last[k])}
    return Best(pick.trial_id, result.config, pick.values[spec.ranking().metric],
                int(last["epoch"]), last["checkpoint_path"], costs)


def unsaved_results(setup: SearchSetup, unsaved: Mapping[str, Unsaved],
                    history: Callable[[str], tuple[list[dict], bool]]) -> list[tune.Result]:
    """The results of the trials Tune never saved (study.py), from `history` (the metrics of
    each epoch a trial's checkpoint holds): a trial of a study that did not record its Tune id,
    or whose checkpoint cannot be read, gives none."""
    found = []
    for trial_id, trial in unsaved.items():
        if trial.config is None:
            continue
        try:
            epochs, _ = history(trial_id)
        except (checkpoint.CheckpointError, OSError):
            continue
        if epochs:
            found.append(_ray.result(trial_id, trial.config, epochs, setup.trial_dir(trial_id)))
    return found


def family_bests(results: Sequence[tune.Result], metric: str, mode: str) -> dict[str, FamilyBest]:
    """Each model family's best report in a search across families, the best family first."""
    scored: dict[str, list[tuple[float, str]]] = {}  # family -> (best value, trial id)
    for result in results:
        frame, family = result.metrics_dataframe, result.config.get(FAMILY)
        if result.error or frame is None or metric not in frame or family is None:
            continue
        values = frame[metric].dropna()
        if not values.empty:
            best = values.max() if mode == "max" else values.min()
            scored.setdefault(family, []).append((float(best), result.metrics["trial_id"]))
    pick = max if mode == "max" else min
    found = {family: FamilyBest(pick(trials)[1], pick(trials)[0], len(trials))
             for family, trials in scored.items()}
    return dict(sorted(found.items(), key=lambda item: item[1].value, reverse=mode == "max"))


TRACKING_WAIT_S = 600  # how long a finished search waits for an unreachable MLflow
STOPPING_WAIT_S = 10  # ... and a search that is stopping (Ctrl-C), which must not hang


class Interrupted(Exception):
    """The search stopped before its trials ended (Ctrl-C); its state is saved."""


Progress = Callable[[Mapping[str, TrialState]], tune.Callback]


def run(spec: Spec, tracking_uri: str, storage: str | None = None,
        callbacks: tuple[tune.Callback, ...] = (), origin: resume.Origin | None = None,
        resuming: bool = False, progress: Progress | None = None, verbose: bool = False,
        data: tuple | None = None, warm: WarmTrials | None = None) -> Outcome:
    """Run the search `spec` on the connected Ray cluster, or with `resuming` go on with the one
    of that name in `storage`. `origin` records how the spec was made, for a later resume;
    `callbacks` are extra Tune callbacks, called before raysearch's own (the benchmarks time
    trials with one, tests kill the driver from one). `progress` makes the callback that shows
    the search as it runs, given how each trial ended (progress.Progress); `verbose` leaves
    Tune's own reporting on. `data` is what `inputs(spec)` gave, and `warm` what
    warm_trials(spec, tracking_uri) gave, when the caller has read them already (the command
    line does, before Ray starts)."""
    storage = resolve_storage(storage or resume.default_storage())
    hostnames = [n["NodeManagerHostname"] for n in ray.nodes() if n["Alive"]]
    if reason := storage_problem(storage, hostnames):
        raise SpecError(reason)
    if _ray.joined_cluster() and not shared(storage):
        print(f"warning: --storage {storage} is on this machine's disk: if the cluster adds "
              "machines, checkpoints written there are lost. Give a bucket or a network file "
              "system (RAYSEARCH_STORAGE sets the default)", file=sys.stderr)
    if warm is None and not resuming:  # a resumed study holds them already
        warm = warm_trials(spec, tracking_uri)
    max_concurrent = concurrency(spec)
    data_ref = ray.put(data if data is not None else inputs(spec))
    setup = setup_of(spec, storage, data_ref)
    slots = min(max_concurrent, spec.search.trials)
    # every rank of every pool keeps a call waiting in the dispatcher, and every trial one
    waiting = slots * spec.resources.workers + slots
    dispatcher = Dispatcher.options(max_concurrency=max(1000, 4 * waiting)).remote(
        spec.resources.max_failures, max_trial_s=spec.scheduler.max_trial_s)
    # The pools start first: their workers take seconds to come up, while MLflow and Tune
    # get ready.
    pools = Pools(setup, dispatcher, slots, spec.search.trials)
    pools.start()
    try:
        return _run(spec, tracking_uri, storage, setup, dispatcher, pools, max_concurrent,
                    callbacks, origin, resuming, progress, verbose, warm)
    finally:
        pools.stop(now=True)  # a no-op when _run has stopped them


def _run(spec: Spec, tracking_uri: str, storage: str, setup: SearchSetup,
         dispatcher: "ray.actor.ActorHandle", pools: Pools, max_concurrent: int,
         callbacks: tuple[tune.Callback, ...], origin: resume.Origin | None, resuming: bool,
         progress: Progress | None, verbose: bool, warm: WarmTrials | None) -> Outcome:
    metric, mode = spec.ranking().metric, spec.ranking().mode
    fail_fast()
    client = MlflowClient(tracking_uri)
    if resuming:
        state = resume.load(storage, spec.name)
        experiment_id, parent = state.experiment_id, state.parent_run_id
        client.update_run(parent, "RUNNING")
        report.log_info(client, parent, report.SearchInfo.of(spec))  # a search begun before it
    else:
        settings = {"model": spec.models_text(), "data": spec.data.name,
                    "sampler": spec.search.sampler, "trials": spec.search.trials,
                    "scheduler": spec.scheduler.type, "workers": spec.resources.workers}
        experiment_id, parent = tracking.start_search(client, spec.name, spec.source, settings)
        report.log_info(client, parent, report.SearchInfo.of(spec))
        origin = origin or resume.Origin(spec.source.read_text())
        resume.save(storage, spec.name, origin, resume.SearchState(
            origin.overrides, origin.flags, tracking_uri, experiment_id, parent))
    reported = (*DATASETS[spec.data.name].metrics(spec.tasks()), "train_loss", "epoch", "epoch_s",
                *COST_METRICS)
    stopped_early: set[str] = set()
    unsaved: dict[str, Unsaved] = {}  # the searcher's, once Tune restores it
    scheduler = make_scheduler(spec, dispatcher, stopped_early)

    def history(trial_id: str) -> tuple[list[dict], bool]:
        """The metrics of each epoch the trial's checkpoint holds, and whether it was stopped
        early: for the trials a killed driver's Tune (or MLflow) did not hear end."""
        return TrialCheckpoints(setup.trial_dir(trial_id), metric, mode).history()

    trials_cb = tracking.MLflowTrials(client, experiment_id, parent, reported, stopped_early,
                                      history=history, unsaved=unsaved)
    # Tune saves the experiment's state at most this often (10 s by default): a driver killed
    # between a trial's end and the next save would run that trial again on resume.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # A failed trial's traceback goes to its MLflow run (error.txt) and the summary gives its
    # last line, rather than Tune printing every traceback into the live view.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    shown = [progress(trials_cb.states)] if progress else []
    outbox = trials_cb.outbox

    def stop() -> None:
        """The search's run KILLED, then its pools stopped: recorded first, as a stopped job's
        driver may be killed while its pools stop (Ray's RAY_JOB_STOP_WAIT_TIME_S)."""
        outbox.send(lambda: tracking.finish_search(client, parent, None, metric, "KILLED"))
        outbox.drain(STOPPING_WAIT_S, "to record that the search stopped")
        pools.stop(now=True)

    try:  # from here a Ctrl-C (a stopped job's SIGINT) marks the search's run KILLED
        searcher = make_searcher(spec, storage, stopped_early, resuming, warm, unsaved)
        tuner = build_tuner(spec, dispatcher, storage, max_concurrent, scheduler, searcher,
                            [*callbacks, trials_cb, EndedTrials(dispatcher), *shown], resuming,
                            verbose)
        results = tuner.fit()
    except BaseException:
        stop()
        raise
    # Ctrl-C between one trial's end and the next one's start leaves no trial unfinished,
    # only fewer trials than asked for.
    short = len(results) + len(unsaved) < spec.search.trials and not searcher.budget_ended
    if trials_cb.unfinished or short:
        stop()
        raise Interrupted(spec.name)
    pools.stop(now=False)

    # Tune's trials and those it never saved (they ended in the study before a kill)
    ended = [*results, *unsaved_results(setup, unsaved, history)]
    on_front = front_of(spec, ended, trials_cb.states) if spec.several() else []
    best = (champion_of(spec, ended, on_front) if spec.several()
            else best_of(ended, metric, mode, storage, spec.champion_bounds()))
    outcome = Outcome(spec.name, metric, best, trials_cb.states, trials_cb.errors,
                      parent_run_id=parent, max_concurrent=max_concurrent,
                      budget_ended=searcher.budget_ended,
                      families={} if spec.model else family_bests(ended, metric, mode),
                      front=on_front)
    if spec.several():
        tagged = [t for t, s in trials_cb.states.items() if s in ENDED and t in trials_cb.runs]
        outbox.send(lambda: tracking.tag_front(
            client, {t: trials_cb.runs[t] for t in tagged}, {t.trial_id for t in on_front}))
    # Every trial's results reach MLflow before the champion is chosen there; a server that
    # is away is waited for, within a bound, rather than the champion dropped.
    wait_s = float(os.environ.get("RAYSEARCH_TRACKING_WAIT_S", TRACKING_WAIT_S))
    if not outbox.drain(wait_s, "to log the last results and register the champion"):
        raise TrackingDown(tracking_uri, wait_s)
    if best and math.isfinite(best.value):
        # a checkpoint in a bucket is fetched once, for the test set and for the registry
        saved = ray.train.Checkpoint(best.checkpoint, filesystem=filesystem(storage)[0])
        data = ray.get(setup.data_ref)  # once: a large data set is a copy each time
        with saved.as_directory() as local:
            outcome.test_metrics = evaluate(setup, data, best.config, local)
            outcome.promotion = outbox.call(lambda: tracking.promote(
                client, spec.name, trials_cb.runs[best.trial_id], local, metric, mode,
                best.value, {"search_run_id": parent, "trial_id": best.trial_id,
                             "model": best.config.get(FAMILY, spec.model), "epoch": best.epoch,
                             **outcome.test_metrics, **best.costs},
                input_example(*data)),
                wait_s, "to register the champion")
            with tempfile.TemporaryDirectory() as tmp:
                files = diagnose(setup, data, best.config, local, Path(tmp))
                # beside the search's results, and in the run the registered version comes from
                outbox.call(lambda: tracking.log_diagnostics(
                    client, (parent, trials_cb.runs[best.trial_id]), files), wait_s,
                    "to log the champion's diagnostics")
        outbox.send(lambda: client.log_batch(
            parent, metrics=tracking.metrics_now(outcome.test_metrics)))
    outbox.call(lambda: tracking.finish_search(client, parent, best, metric), wait_s,
                "to close the search's run")
    outcome.report = outbox.call(lambda: write_report(client, spec.name, storage, parent),
                                 wait_s, "to write the search's report")
    return outcome


def write_report(client: MlflowClient, name: str, storage: str, parent: str) -> str | None:
    """The search's report (report.html, trials.csv) in `<storage>/<name>/report` and as
    artifacts of its run; its page's path there, or None when it could not be drawn (the
    search's results stand: the report is a view of them, `raysearch report` draws it again)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            files = report.write(client, [report.load(client, name, parent)], Path(tmp))
            client.log_artifacts(parent, tmp, artifact_path="report")
            fs, root = filesystem(storage)
            fs.create_dir(f"{root}/{name}/report", recursive=True)
            pyarrow.fs.copy_files(tmp, f"{root}/{name}/report", destination_filesystem=fs)
        except Exception as e:  # noqa: BLE001  a view that fails to draw or land ends no search
            if unreachable(e):
                raise  # the outbox waits for the store and tries again
            print(f"warning: the search's report was not written: {first_line(e)}",
                  file=sys.stderr)
            return None
        return f"{storage}/{name}/report/{files[0].name}"
