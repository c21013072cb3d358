"""The search's Optuna study in an SQL storage, named after the search, so `optuna-dashboard`
shows it live and `optuna.load_study` reads it: by default `sqlite:///<storage>/<name>/optuna.db`
beside the search's results; `search.storage` (or RAYSEARCH_STUDY_STORAGE) names a database
instead, one of them required when the storage is a bucket, where SQLite cannot live.

Tune's OptunaSearch tells the study what Tune says of a trial; StudySearch makes the study say
what raysearch means: a trial ASHA stopped is PRUNED (as an Optuna pruner's), the intermediate
values are per epoch (Tune counts reports, and a resumed trial reports its replayed epochs
again), and on resume a trial the study holds as RUNNING that Tune never saved (started in the
second before a kill) is FAIL, as its MLflow run is `discarded`, while one the study holds as
ended that Tune never saved (started and ended in that second) counts towards the search's
trials (`unsaved`): each trial it asks records its Tune trial id as a user attribute
(`trial_id`). It also keeps the search's time budget: past `search.time_budget_s` it proposes no
more trials.
"""

import os
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from raysearch.job import FAMILY, TIME_LIMITED, TrialState, Unsaved
from raysearch.spec import Spec, SpecError
from raysearch.spec.sections import Bound
from raysearch.warm_start import WarmTrials


def storage_url(spec: Spec, storage: str) -> str:
    """Where the search's study lives: `search.storage`, else RAYSEARCH_STUDY_STORAGE (a
    cluster's database, which cluster.yaml sets on the head, where searches run), else SQLite
    beside a local storage."""
    if spec.search.storage:
        return spec.search.storage
    if os.environ.get("RAYSEARCH_STUDY_STORAGE"):
        return os.environ["RAYSEARCH_STUDY_STORAGE"]
    if "://" in storage:
        raise SpecError(f"{spec.source}: search.storage: --storage {storage} is a bucket, where "
                        "the search's Optuna study cannot be an SQLite file: give an SQL "
                        "database the search reaches (postgresql://..., sqlite:///PATH on the "
                        "machine it runs on), or set RAYSEARCH_STUDY_STORAGE")
    return f"sqlite:///{Path(storage) / spec.name / 'optuna.db'}"


def dashboard_command(url: str) -> str:
    return f"optuna-dashboard {url}"


class StudySearch(OptunaSearch):
    """OptunaSearch whose study is the search's own, in `url` under the search's name.
    `stopped_early`: the trial ids stopped before max_t (the scheduler's, and those past
    scheduler.max_trial_s);
    `fresh`: a new search, whose study replaces one of the same name (as its Tune experiment
    and its resume state do), rather than a resumed one; `warm`: earlier searches' trials, given
    to a fresh study (warm_start.py); `families`: the model families of a search across them,
    each of which a fresh study tries once first (after `warm`'s, if none of those is of it),
    so that none is judged by the sampler, or dropped by it, without a trial; `bounds`: the
    spec's constraints, each ended trial's excess over which (from its last result) is its
    constraint in the study (Optuna's `Trial.set_constraint`, which tpe, nsga2 and gp read);
    `trials`: the search's count, which it asks no more than, counting `unsaved`; `unsaved`:
    filled on restore with the trials Tune never saved that the study holds as ended, by Tune
    trial id."""

    def __init__(self, url: str, name: str, stopped_early: Collection[str], fresh: bool,
                 budget_s: float | None = None, warm: WarmTrials | None = None,
                 families: Sequence[str] = (), bounds: Sequence[Bound] = (),
                 trials: int | None = None, unsaved: dict[str, Unsaved] | None = None,
                 **kwargs: Any):
        if url.startswith("sqlite:///"):  # its folder, once the search starts
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(url)
        if fresh and name in optuna.study.get_all_study_names(storage):
            optuna.delete_study(study_name=name, storage=storage)
        if fresh and warm:  # run first, before anything the sampler proposes
            kwargs["points_to_evaluate"] = warm.first
        super().__init__(storage=storage, study_name=name, **kwargs)
        if fresh and warm:  # what the sampler knows from its first proposal
            self._ot_study.add_trials(warm.trials)
        tried = {point.get(FAMILY) for point in kwargs.get("points_to_evaluate") or ()}
        for family in families if fresh else ():
            if family not in tried:  # the family fixed, its params sampled
                self._ot_study.enqueue_trial({FAMILY: family})
        self.stopped_early, self.bounds = stopped_early, tuple(bounds)
        # search.time_budget_s, from this driver's start: past it no trial starts (Optuna's
        # `timeout`: the running ones finish), and Tune ends the search once they have
        self.budget_s, self.began, self.budget_ended = budget_s, time.monotonic(), False
        self.steps: dict[str, set[int]] = {}  # the epochs each trial reported to the study
        self.trials, self.unsaved = trials, unsaved if unsaved is not None else {}

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.budget_s is not None and time.monotonic() - self.began > self.budget_s:
            self.budget_ended = True
            return Searcher.FINISHED
        if (self.trials is not None and trial_id not in self._ot_trials
                and len(self._ot_trials) + len(self.unsaved) >= self.trials):
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if isinstance(config, dict):  # for a driver that finds the trial ended but not saved
            self._ot_trials[trial_id].set_user_attr("trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or isinstance(self.metric, list):
            return
        epoch = int(result.get("epoch", 0))
        seen = self.steps.setdefault(trial_id, set())
        if epoch in seen or self.metric not in result:
            return
        seen.add(epoch)
        self._ot_trials[trial_id].report(result[self.metric], epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in self._completed_trials:  # told before a kill (see restore)
            return
        # Tune does not pass on the result at which its scheduler stops a trial (at max_t
        # too) as a result: it is the last intermediate value
        if result and not error:
            self.on_trial_result(trial_id, result)
        if result and not error:  # Optuna's constraints (<= 0 met), which its samplers read
            for bound in self.bounds:
                self._ot_trials[trial_id].set_constraint(str(bound), bound.excess(result))
        stopped = trial_id in self.stopped_early or bool(result and result.get(TIME_LIMITED))
        if stopped and not error:
            ot_trial = self._ot_trials[trial_id]
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's saved searcher (the whole __dict__, pickled by OptunaSearch.save), with this
        driver's scheduler set; then the study's trials that no saved Tune trial holds (asked
        in the second before the driver died) are failed, and those the study holds as ended
        though the saved searcher does not (told in the second before the driver died, before
        Tune saved the searcher) stay as the study has them: Tune runs such a trial again
        from its checkpoint, and its reports change nothing in the study. Ended trials of the
        study that no saved Tune trial holds (asked and ended in that second) go to
        `unsaved`."""
        this_run = {k: self.__dict__[k] for k in ("stopped_early", "budget_s", "began",
                                                  "budget_ended", "trials", "unsaved")}
        super().restore(checkpoint_path)
        self.__dict__.update(this_run)
        known = {t.number for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False,
                                                states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in known:
                self._ot_study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
        ended = {t.number for t in self._ot_study.get_trials(deepcopy=False)
                 if t.state.is_finished()}
        self._completed_trials |= {trial_id for trial_id, trial in self._ot_trials.items()
                                   if trial.number in ended}
        self.unsaved.clear()
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(
                optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)):
            if frozen.number in known or "search" in frozen.user_attrs:  # saved, or warm's
                continue
            # a study written before trials recorded their Tune id: counted, nothing more
            known_id = "trial_id" in frozen.user_attrs
            trial_id = frozen.user_attrs["trial_id"] if known_id else f"#{frozen.number}"
            self.unsaved[trial_id] = Unsaved(
                trial_id, TrialState.STOPPED_EARLY
                if frozen.state == optuna.trial.TrialState.PRUNED else TrialState.COMPLETED,
                {**frozen.params, **self._space.fixed_for(frozen.params)} if known_id else None)
