"""Several objectives: val_accuracy against the model's size, on a real Ray cluster with 2-worker
gloo trials, a real Optuna study in SQLite and a real MLflow store. The Pareto front, the
stops and the champion are checked against what the runs logged."""

import math
from pathlib import Path

import optuna
from helpers import assert_nothing_left_running, child_runs
from mlflow import MlflowClient

from raysearch import cli, pareto, search, tracking
from raysearch.moasha import MOASHA, pareto_ranks
from raysearch.spec import Objective, load_spec

TWO_OBJECTIVES = """\
    name: accuracy-and-size
    model: lstm
    data: {name: seq_digits}
    objective:
      - {metric: val_accuracy, mode: max}
      - {metric: params_total, mode: min}
    constraints: ["params_total <= 6000"]
    search: {trials: 6, sampler: tpe, seed: 0, max_concurrent: 1}
    scheduler: {type: asha, max_t: 3, grace_period: 1, reduction_factor: 6}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr:          {type: float, low: 1e-3, high: 3e-2, log: true}
      hidden_size: {type: categorical, choices: [8, 16, 32, 64]}
    fixed: {optimizer: adam, batch_size: 64}
"""


def dominated(point: tuple[float, float], by: list[tuple[float, float]]) -> bool:
    """(accuracy, size): another is at least as accurate and as small, and better in one."""
    return any(a >= point[0] and s <= point[1] and (a, s) != point for a, s in by)


def test_a_two_objective_search_keeps_its_pareto_front(ray_cluster, tmp_path, tracking_uri,
                                                       write_spec):
    spec = load_spec(write_spec(TWO_OBJECTIVES))
    outcome = search.run(spec, tracking_uri, str(tmp_path / "results"))
    assert outcome.count("failed") == 0, outcome.errors
    client = MlflowClient(tracking_uri)
    runs = sorted(child_runs(client, outcome), key=lambda r: r.info.start_time)
    assert len(runs) == 6

    def at(run, epoch: int) -> tuple[float, float]:
        accuracy = next(m.value for m in client.get_metric_history(run.info.run_id,
                                                                   "val_accuracy")
                        if m.step == epoch)
        return accuracy, run.data.metrics["params_total"]

    # MOASHA at its one rung (epoch 1; reduction factor 6, so one earlier trial ahead stops a
    # trial): a trial is stopped exactly when an earlier trial's epoch 1 dominates its own
    states = [run.data.tags[tracking.STATE_TAG] for run in runs]
    for i, run in enumerate(runs):
        beaten = dominated(at(run, 1), [at(earlier, 1) for earlier in runs[:i]])
        assert (states[i] == "stopped_early") == beaten, (i, states)
    assert "stopped_early" in states and "completed" in states

    # the front: the non-dominated trials that ran to max_t, at their last epoch, tagged
    completed = [run for run in runs if run.data.tags[tracking.STATE_TAG] == "completed"]
    finals = {run.data.tags[tracking.TRIAL_TAG]: at(run, 3) for run in completed}
    front = {t for t, p in finals.items() if not dominated(p, list(finals.values()))}
    assert {t.trial_id for t in outcome.front} == front
    assert {run.data.tags[tracking.TRIAL_TAG] for run in runs
            if run.data.tags.get(tracking.PARETO_TAG) == "true"} == front
    assert all(run.data.tags[tracking.PARETO_TAG] == "false" for run in completed
               if run.data.tags[tracking.TRIAL_TAG] not in front)

    # the champion: of the front's trials within the constraint, the most accurate
    meeting = {t: p for t, p in finals.items() if t in front and p[1] <= 6000}
    best = max(meeting, key=lambda t: meeting[t][0])
    assert outcome.best.trial_id == best and outcome.promotion.champion
    version = client.get_model_version_by_alias("accuracy-and-size", "champion")
    assert version.tags["trial_id"] == best
    # the summary lists the front, the champion marked
    with cli.console.capture() as shown:
        cli.show(outcome, spec)
    champion_row = next(line for line in shown.get().splitlines() if best in line)
    assert "Pareto front" in shown.get() and "champion" in champion_row
    assert all(trial_id in shown.get() for trial_id in front)

    # the study: two directions, each ended trial's values, the constraint's excess
    study = optuna.load_study(
        study_name="accuracy-and-size",
        storage=f"sqlite:///{tmp_path / 'results'}/accuracy-and-size/optuna.db")
    assert len(study.directions) == 2
    for run, trial in zip(runs, study.trials, strict=True):
        stopped = run.data.tags[tracking.STATE_TAG] == "stopped_early"
        assert trial.state == (optuna.trial.TrialState.PRUNED if stopped
                               else optuna.trial.TrialState.COMPLETE)
        size = run.data.metrics["params_total"]
        assert math.isclose(trial.constraints["params_total <= 6000"], size - 6000)
        if not stopped:
            assert trial.values == list(at(run, 3))
    # the report lists the front and draws Optuna's Pareto-front plot of it
    page = Path(outcome.report).read_text()
    assert f"Pareto front ({len(front)} trials" in page and "Pareto-front Plot" in page
    assert_nothing_left_running()


def test_pareto_ranks_sort_fronts():
    # minimized pairs: (1, 4), (2, 2), (4, 1) trade off; (3, 3) is behind (2, 2); (5, 5) last
    assert pareto_ranks([(1, 4), (3, 3), (2, 2), (5, 5), (4, 1)]) == [0, 1, 0, 2, 0]


def test_moasha_stops_a_trial_when_enough_earlier_ones_are_on_better_fronts():
    moasha = MOASHA([("acc", "max"), ("size", "min")], "epoch", max_t=9, milestones=[1, 3],
                    reduction_factor=2)
    judged = [moasha.judge(trial_id, 1, moasha.point({"acc": acc, "size": size}))
              for trial_id, acc, size in [("a", 0.9, 100), ("b", 0.2, 500), ("c", 0.1, 600),
                                          ("x", 0.5, 200), ("y", 0.95, 300)]]
    # b is behind a, c behind a and b: each has at least ceil(n / 2) of the n before it on
    # better fronts. x is behind a alone, ahead of b and c: one of three is not enough. y
    # trades accuracy for size with a: no one is ahead of it.
    assert judged == ["CONTINUE", "STOP", "STOP", "CONTINUE", "CONTINUE"]
    # a trial is judged once at a rung: a later report there changes nothing
    assert moasha.judge("x", 1, (0.0, 0.0)) == "CONTINUE" and moasha.recorded[1]["x"] == (-0.5, 200)


def test_a_nan_objective_is_the_worst_at_a_rung_and_on_no_front():
    moasha = MOASHA([("acc", "max"), ("size", "min")], "epoch", max_t=9, milestones=[1],
                    reduction_factor=2)
    assert moasha.judge("diverged", 1, moasha.point({"acc": math.nan, "size": 10})) == "CONTINUE"
    assert moasha.judge("good", 1, moasha.point({"acc": 0.95, "size": 10})) == "CONTINUE"
    objectives = [Objective(metric="val_accuracy", mode="max"),
                  Objective(metric="params_total", mode="min")]
    ended = [pareto.Ended("diverged", {"val_accuracy": math.nan, "params_total": 5}),
             pareto.Ended("good", {"val_accuracy": 0.9, "params_total": 50})]
    assert [t.trial_id for t in pareto.front(ended, objectives, ())] == ["good"]

