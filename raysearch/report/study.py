"""A search's trials as an in-memory Optuna study, so Optuna's own plots draw them.

Each ended trial becomes one Optuna trial with its sampled params and its objective per epoch
as intermediate values. Like an Optuna study whose pruner stopped trials, a trial ASHA stopped
early is PRUNED (its curve shows in the intermediate-values plot, not in the history or the
importances, which compare trials trained to the end); a completed trial's value is its last
epoch's, as OptunaSearch tells it to Optuna.
"""

import math

import optuna
from optuna.trial import TrialState as OptunaState

from raysearch.job import TrialState
from raysearch.report.records import SearchRecord

STATES = {TrialState.COMPLETED.value: OptunaState.COMPLETE,
          TrialState.STOPPED_EARLY.value: OptunaState.PRUNED,
          TrialState.FAILED.value: OptunaState.FAIL}


def study_of(record: SearchRecord) -> optuna.Study:
    info = record.info
    study = optuna.create_study(study_name=info.name,
                                direction="minimize" if info.mode == "min" else "maximize")
    for trial in record.trials:
        state = STATES.get(trial.state)
        if state is None or (state == OptunaState.COMPLETE and trial.last is None):
            continue  # still running or never trained: nothing to compare yet
        if state == OptunaState.COMPLETE and not math.isfinite(trial.last):
            state = OptunaState.FAIL  # what Optuna makes of a trial told NaN
        params = {k: v for k, v in trial.params.items() if k in info.distributions}
        curve = {epoch: v for epoch, v in trial.curve if math.isfinite(v)}
        study.add_trial(optuna.trial.create_trial(
            state=state, value=trial.last if state == OptunaState.COMPLETE else None,
            params=params, distributions={k: info.distributions[k] for k in params},
            intermediate_values=curve,
            user_attrs={"trial_id": trial.trial_id, "run_id": trial.run_id}))
    return study
