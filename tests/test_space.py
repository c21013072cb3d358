"""The spec's params as Optuna sees them: conditional params, samplers, fixed values."""

import optuna
import pytest

from raysearch.space import DefineByRun, make_sampler
from raysearch.spec import load_spec, resolve_space

SPACE = """\
    name: conditional
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 30, sampler: SAMPLER, seed: 3}
    params:
      optimizer: {type: categorical, choices: [sgd, adam, adamw]}
      momentum:  {type: float, low: 0.5, high: 0.99, when: {optimizer: sgd}}
      lr:        {type: float, low: 1e-4, high: 1e-1, log: true}
      channels:  {type: int, low: 8, high: 64, step: 8}
      lr_schedule: {type: categorical, choices: [none, cosine]}
      label_smoothing: {type: float, low: 0.0, high: 0.2, when: {optimizer: [adam, adamw]}}
    fixed: {batch_size: 32}
"""


def sample(spec, n: int) -> list[dict]:
    study = optuna.create_study(sampler=make_sampler(spec), direction="maximize")
    space, configs = DefineByRun(spec), []
    for i in range(n):
        trial = study.ask()
        fixed = space(trial)
        configs.append({**trial.params, **fixed})
        study.tell(trial, float(i % 7))
    return configs


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "gp", "qmc"])
def test_conditional_params_are_sampled_only_when_their_condition_holds(sampler, write_spec):
    spec = load_spec(write_spec(SPACE.replace("SAMPLER", sampler)))
    configs = sample(spec, 20)
    for config in configs:
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
        assert ("label_smoothing" in config) == (config["optimizer"] != "sgd")
        assert config["batch_size"] == 32
        assert 1e-4 <= config["lr"] <= 1e-1 and config["channels"] % 8 == 0
    assert {c["optimizer"] for c in configs} == {"sgd", "adam", "adamw"}


def test_a_seeded_sampler_repeats_its_suggestions(write_spec):
    spec = load_spec(write_spec(SPACE.replace("SAMPLER", "tpe")))
    assert sample(spec, 15) == sample(spec, 15)


def test_a_trial_of_a_search_across_families_has_its_family_s_params_alone():
    spec = load_spec(resolve_space("families"), ["search.sampler=random"])
    configs = sample(spec, 30)
    assert {c["model"] for c in configs} == {"esn", "lstm", "gru"}
    for config in configs:
        esn = config["model"] == "esn"
        assert ("units" in config and "spectral_radius" in config) == esn
        assert ("lr" in config and "hidden_size" in config) == (not esn)
        # of the fixed values, those its family takes
        fixed = {name: config[name] for name in set(config) - set(spec.params)}
        assert fixed == ({"washout": 0} if esn else
                         {"optimizer": "adam", "batch_size": 64, "lr_schedule": "cosine"})
