"""The search-space file: valid files load, every broken one is one SpecError line naming the
file, the line and the key path. No Ray here."""

import textwrap
from pathlib import Path

import pytest
import yaml

from raysearch.models import hyperparams_of
from raysearch.spec import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SpecError,
    load_spec,
    ready,
    ready_spaces,
    resolve_space,
)
from raysearch.spec.yaml_lines import Loader

CNN = """\
name: cnn-digits
model: cnn
data: {name: digits}
objective: {metric: val_accuracy, mode: max}
params:
  lr:        {type: float, low: 1e-4, high: 1e-1, log: true}
  optimizer: {type: categorical, choices: [sgd, adam]}
  momentum:  {type: float, low: 0.5, high: 0.99, when: {optimizer: sgd}}
  channels:  {type: int, low: 8, high: 32, step: 8}
fixed: {batch_size: 32}
"""

GRU = """\
name: gru-mackey-glass
model: gru
data: {name: mackey_glass}
objective: {metric: val_nrmse, mode: min}
params:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""

ESN = """\
name: esn-mackey-glass
model: esn
data:
  name: mackey_glass
  horizon: 1
objective: {metric: val_nrmse, mode: min}
search: {trials: 4, sampler: random, seed: 1}
scheduler: {type: asha, max_t: 6, grace_period: 2}
resources: {workers: 2, gpus_per_worker: 0}
params:
  units:           {type: int, low: 100, high: 1000, log: true}
  spectral_radius: {type: float, low: 0.1, high: 1.5}
  ridge:           {type: float, low: 1e-9, high: 1e-2, log: true}
fixed:
  washout: 100
"""

FAMILIES = """\
name: families
data: {name: seq_digits}
objective: {metric: val_accuracy, mode: max}
params:
  model:  {type: categorical, choices: [esn, lstm, gru]}
  units:  {type: int, low: 50, high: 500, when: {model: esn}}
  lr:     {type: float, low: 1e-4, high: 1e-2, log: true, when: {model: [lstm, gru]}}
  hidden_size: {type: categorical, choices: [16, 32], when: {model: [lstm, gru]}}
  num_layers:  {type: int, low: 1, high: 2, when: {hidden_size: 32}}
  seed:   {type: int, low: 0, high: 3}
fixed: {washout: 0, batch_size: 32}
"""

OBJECTIVES = """\
name: small-and-good
model: cnn
data: {name: digits}
objective:
  - {metric: val_accuracy, mode: max}
  - {metric: latency_ms, mode: min}
constraints: ["params_total <= 2e6"]
champion: {metric: val_accuracy, where: ["latency_ms <= 5"]}
params:
  lr: {type: float, low: 1e-4, high: 1e-1, log: true}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, *overrides: str, **cli) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides, **cli)
    return str(info.value)


def test_a_cnn_spec_loads_with_defaults(tmp_path):
    spec = load_spec(write(tmp_path, CNN))
    assert (spec.name, spec.model, spec.data.name) == ("cnn-digits", "cnn", "digits")
    assert spec.search.trials == 10 and spec.search.sampler == "tpe" and spec.search.seed == 0
    assert spec.scheduler.type == "asha" and spec.resources.workers == 2
    assert isinstance(spec.params["optimizer"], CategoricalParam)
    assert isinstance(spec.params["channels"], IntParam) and spec.params["channels"].step == 8
    assert spec.params["momentum"].when == {"optimizer": "sgd"}
    assert spec.source == tmp_path / "space.yaml"
    assert "source" not in spec.model_dump()
    assert spec.data_options().val_fraction == 0.2  # the data set's default, filled in


def test_an_esn_spec_loads_and_reads_1e_9_as_a_float(tmp_path):
    spec = load_spec(write(tmp_path, ESN))
    ridge = spec.params["ridge"]
    assert isinstance(ridge, FloatParam) and ridge.log
    assert ridge.low == 1e-9 and isinstance(ridge.low, float) and ridge.high == 1e-2
    assert spec.data.options["horizon"] == 1 and spec.data.options["length"] == 6000
    assert spec.data_options().horizon == 1
    assert spec.scheduler.grace_period == 2 and spec.search.sampler == "random"


@pytest.mark.parametrize("text, value", [
    ("1e-9", 1e-9), ("1E-9", 1e-9), ("1.5e+3", 1500.0), (".5", 0.5), ("-.5", -0.5), ("2e3", 2000.0),
    ("-1e-3", -1e-3), ("3", 3), ("1.0.0", "1.0.0"), ("1e", "1e"), (".", "."),
])
def test_yaml_reads_exponents_as_floats(text, value):
    loaded = yaml.load(f"a: {text}", Loader=Loader)["a"]
    assert loaded == value and type(loaded) is type(value)


def test_hyperparams_puts_sampled_values_over_fixed_ones(tmp_path):
    spec = load_spec(write(tmp_path, ESN))
    _, hp = hyperparams_of({**spec.fixed, "units": 300, "ridge": 1e-6}, spec.model)
    assert (hp.units, hp.ridge, hp.washout, hp.leak_rate) == (300, 1e-6, 100, 0.3)


def test_a_when_chain_without_a_cycle_is_fine(tmp_path):
    text = CNN.replace("fixed: {batch_size: 32}", "  lr_schedule: {type: categorical, choices: "
                       "[none, cosine], when: {optimizer: sgd}}\n"
                       "  weight_decay: {type: float, low: 0, high: 0.1, "
                       "when: {lr_schedule: [cosine, none]}}\n")
    assert load_spec(write(tmp_path, text)).params["weight_decay"].when is not None


def test_a_search_across_families_gives_each_its_params_and_fixed_values(tmp_path):
    spec = load_spec(write(tmp_path, FAMILIES))
    assert spec.model is None and spec.families() == ("esn", "lstm", "gru")
    assert spec.models_text() == "esn | lstm | gru"
    # a fixed value goes to the families that take it
    esn, esn_hp = hyperparams_of({**spec.fixed, "model": "esn", "units": 80}, spec.model)
    gru, gru_hp = hyperparams_of({**spec.fixed, "model": "gru", "lr": 1e-3}, spec.model)
    assert (esn.name, esn_hp.units, esn_hp.washout) == ("esn", 80, 0)
    assert (gru.name, gru_hp.lr, gru_hp.batch_size) == ("gru", 1e-3, 32)


def test_several_objectives_with_constraints_and_a_champion_rule(tmp_path):
    spec = load_spec(write(tmp_path, OBJECTIVES))
    assert spec.several() and [o.metric for o in spec.objective] == ["val_accuracy",
                                                                     "latency_ms"]
    assert spec.ranking().metric == "val_accuracy"
    (bound,) = spec.bounds()
    assert (bound.metric, bound.op, bound.value) == ("params_total", "<=", 2e6)
    assert bound.excess({"params_total": 1.5e6}) < 0 < bound.excess({"params_total": 3e6})
    assert [str(b) for b in spec.champion_bounds()] == ["latency_ms <= 5"]
    # the champion's metric defaults to the first objective, its bounds to the constraints
    spec = load_spec(write(tmp_path, OBJECTIVES.replace(
        'champion: {metric: val_accuracy, where: ["latency_ms <= 5"]}\n', "")))
    assert spec.ranking().metric == "val_accuracy"
    assert [str(b) for b in spec.champion_bounds()] == ["params_total <= 2e+06"]
    # one objective is a mapping, or a list of one
    assert not load_spec(write(tmp_path, CNN)).several()


def test_empty_sections_mean_their_defaults(tmp_path):
    spec = load_spec(write(tmp_path, CNN.replace("fixed: {batch_size: 32}", "fixed:\nsearch:")))
    assert spec.fixed == {} and spec.search.trials == 10


def test_the_ready_spaces_are_valid():
    assert ready_spaces()  # shipped with the package
    for path in ready_spaces():
        load_spec(path)


# (case id, base, (old, new) replacement; new marks the offending line with `# <-` when there
# is one, the key path, and a word the message must hold)
BROKEN = [
    ("top-level typo", CNN, ("fixed:", "serach: {trials: 3}  # <-\nfixed:"),
     "serach", "did you mean 'search'?"),
    ("section typo", ESN, ("seed: 1}", "seed: 1, trails: 3}  # <-"),
     "search.trails", "did you mean 'trials'?"),
    ("param key typo", CNN, ("high: 1e-1, log: true}", "high: 1e-1, lg: true}  # <-"),
     "params.lr.lg", "did you mean 'log'?"),
    ("unknown hyperparameter", ESN, ("  units:", "  unitz:"),
     "params.unitz", "unknown hyperparameter for model 'esn'"),
    ("unknown fixed hyperparameter", ESN, ("washout: 100", "washot: 100  # <-"),
     "fixed.washot", "did you mean 'washout'?"),
    ("low >= high", ESN, ("low: 0.1, high: 1.5}", "low: 1.5, high: 0.1}  # <-"),
     "params.spectral_radius.low", "must be less than high"),
    ("log with low 0", ESN, ("low: 1e-9, high: 1e-2", "low: 0, high: 1e-2"),
     "params.ridge.low", "log range needs low > 0"),
    ("int log with a step", ESN, ("high: 1000, log: true}", "high: 1000, log: true, step: 10}"),
     "params.units.step", "log and step"),
    ("when names a missing param", CNN, ("when: {optimizer: sgd}", "when: {optimiser: sgd}"),
     "params.momentum.when.optimiser", "no param named 'optimiser'"),
    ("when names a float param", CNN, ("when: {optimizer: sgd}", "when: {lr: 0.1}"),
     "params.momentum.when.lr", "categorical"),
    ("when value not a choice", CNN, ("when: {optimizer: sgd}", "when: {optimizer: [adamw]}"),
     "params.momentum.when.optimizer", "'adamw' is not a choice"),
    ("when on itself", CNN, ("choices: [sgd, adam]}", "choices: [sgd, adam], when: "
                             "{optimizer: sgd}}  # <-"),
     "params.optimizer.when.optimizer", "itself"),
    ("when cycle", CNN, ("choices: [sgd, adam]}", "choices: [sgd, adam], when: {lr_schedule: "
                         "none}}  # <-\n  lr_schedule: {type: categorical, choices: [none], "
                         "when: {optimizer: sgd}}"),
     "params.optimizer.when", "optimizer -> lr_schedule -> optimizer"),
    ("metric not reported", ESN, ("metric: val_nrmse", "metric: val_accuracy"),
     "objective.metric", "val_nrmse, val_mse, train_loss"),
    ("model cannot read the data", ESN, ("model: esn", "model: cnn  # <-"),
     "model", "image data"),
    ("unknown model", CNN, ("model: cnn", "model: cnnn  # <-"), "model", "did you mean 'cnn'?"),
    ("a forecaster that reads the future", GRU, ("  lr:", "  bidirectional: {type: "
                                                 "categorical, choices: [false, true]}  # <-\n"
                                                 "  lr:"),
     "params.bidirectional.choices.1", "forecasting takes bidirectional: false"),
    ("unknown data set", CNN, ("{name: digits}", "{name: digit}  # <-"),
     "data.name", "did you mean 'digits'?"),
    ("unknown data option", ESN, ("horizon: 1", "horizn: 1  # <-"),
     "data.horizn", "did you mean 'horizon'?"),
    ("bad data option", ESN, ("horizon: 1", "horizon: 0  # <-"),
     "data.horizon", "greater than or equal to 1"),
    ("bad fixed value", CNN.replace("optimizer", "lr_schedule"),
     ("fixed: {batch_size: 32}", "fixed: {optimizer: adm}"),
     "fixed.optimizer", "'sgd', 'adam' or 'adamw'"),
    ("bad choice", CNN, ("choices: [sgd, adam]}", "choices: [sgd, adm]}  # <-"),
     "params.optimizer.choices.1", "'adm'"),
    ("no choices", CNN, ("choices: [sgd, adam]}", "choices: []}  # <-"),
     "params.optimizer.choices", "at least one"),
    ("duplicate choices", CNN, ("choices: [sgd, adam]}", "choices: [sgd, sgd]}  # <-"),
     "params.optimizer.choices.1", "duplicate"),
    ("high out of the field's range", ESN, ("  ridge:", "  leak_rate: {type: float, low: 0.1, "
                                            "high: 2.0}  # <-\n  ridge:"),
     "params.leak_rate.high", "less than or equal to 1"),
    ("float param for an int field", ESN, ("{type: int, low: 100", "{type: float, low: 100"),
     "params.units.type", "use type: int"),
    ("unknown param type", ESN, ("{type: int, low: 100", "{type: integer, low: 100"),
     "params.units.type", "int, float or categorical"),
    ("both params and fixed", ESN, ("washout: 100", "units: 100  # <-"),
     "fixed.units", "either searched or fixed"),
    ("bool as int", ESN, ("trials: 4,", "trials: yes,"), "search.trials", "valid integer"),
    ("grace period over max_t", ESN, ("grace_period: 2}", "grace_period: 7}"),
     "scheduler.grace_period", "exceeds max_t"),
    ("bad mode", ESN, ("mode: min}", "mode: minimize}"), "objective.mode", "'min' or 'max'"),
    ("missing nested key", ESN, ("objective: {metric: val_nrmse, mode: min}",
                                 "objective: {metric: val_nrmse}  # <-"),
     "objective.mode", "missing"),
    ("bad name", ESN, ("name: esn-mackey-glass", "name: esn mackey glass  # <-"),
     "name", "letters, digits"),
    ("duplicate key", ESN, ("washout: 100", "washout: 100\n  washout: 50  # <-"),
     "fixed.washout", "duplicate key (first at line 15)"),
    ("generative mode for a gradient model", ESN.replace("model: esn", "model: lstm").replace(
        "  units:           {type: int, low: 100, high: 1000, log: true}\n", "").replace(
        "  spectral_radius: {type: float, low: 0.1, high: 1.5}\n", "").replace(
        "  ridge:           {type: float, low: 1e-9, high: 1e-2, log: true}\n",
        "  lr: {type: float, low: 1e-4, high: 1e-2, log: true}\n").replace(
        "  washout: 100\n", "  hidden_size: 8\n"),
     ("horizon: 1", "horizon: 84\n  mode: generative  # <-"), "data.mode", "only model 'esn'"),
    ("free runs longer than the split", ESN,
     ("data:\n  name: mackey_glass\n  horizon: 1",
      "data:  # <-\n  name: mackey_glass\n  horizon: 84\n  mode: generative\n  length: 1000"),
     "data", "warmup (500) + horizon (84) is longer than the validation or test split (200"),
    ("infinite bound", ESN, ("low: 1e-9, high: 1e-2", "low: 1e-9, high: .inf"),
     "params.ridge.high", "finite number"),
    ("NaN fixed value", ESN, ("washout: 100", "washout: 100\n  leak_rate: .nan  # <-"),
     "fixed.leak_rate", "finite number"),
    ("negative gpus", ESN, ("gpus_per_worker: 0}", "gpus_per_worker: -1}"),
     "resources.gpus_per_worker", "greater than or equal to 0"),
    # a search across model families (params.model)
    ("a param a searched family does not take", FAMILIES,
     ("low: 1e-4, high: 1e-2, log: true, when: {model: [lstm, gru]}}", "low: 1e-4, high: 1e-2, "
      "log: true}  # <-"), "params.lr", "model 'esn' does not take 'lr': limit it with when: "
     "{model: [lstm, gru]}"),
    ("a param no searched family takes", FAMILIES, ("  seed:", "  filters: {type: int, low: 1, "
                                                    "high: 2}  # <-\n  seed:"),
     "params.filters", "unknown hyperparameter for models esn, lstm, gru"),
    ("a fixed value no searched family takes", FAMILIES, ("fixed: {washout: 0,",
                                                          "fixed: {washot: 0,"),
     "fixed.washot", "did you mean 'washout'?"),
    ("a fixed value a family refuses", FAMILIES, ("fixed: {washout: 0,", "fixed: {washout: -1,"),
     "fixed.washout", "greater than or equal to 0"),
    ("a value a family refuses", FAMILIES, ("low: 50, high: 500,", "low: 1, high: 500,"),
     "params.units.low", "greater than or equal to 2"),
    ("an unknown family", FAMILIES, ("choices: [esn, lstm, gru]}", "choices: [esn, lsmt, gru]}"),
     "params.model.choices.1", "did you mean 'lstm'?"),
    ("a family that cannot learn the data", FAMILIES, ("choices: [esn, lstm, gru]}",
                                                       "choices: [esn, lstm, gru, cnn]}"),
     "params.model.choices.3", "model 'cnn' needs image data"),
    ("both model and params.model", FAMILIES, ("data:", "model: esn  # <-\ndata:"),
     "model", "give either model or params.model"),
    ("a searched family under a condition", FAMILIES, ("choices: [esn, lstm, gru]}",
                                                       "choices: [esn, lstm, gru], when: "
                                                       "{seed: 1}}"),
     "params.model.when", "cannot depend on another param"),
    ("a condition on a family not searched", FAMILIES, ("when: {model: esn}}",
                                                        "when: {model: fcn}}"),
     "params.units.when.model", "'fcn' is not a choice of 'model'"),
    # num_layers is sampled when hidden_size is, which only the LSTM and GRU sample
    ("a condition that leaves a family", FAMILIES, ("when: {hidden_size: 32}}",
                                                    "when: {hidden_size: 32, model: esn}}"),
     "params.num_layers.when", "no model family of the search samples it"),
    # several objectives
    ("an objective not reported", OBJECTIVES, ("{metric: latency_ms,", "{metric: latncy_ms,"),
     "objective.1.metric", "does not report 'latncy_ms'"),
    ("an objective twice", OBJECTIVES, ("{metric: latency_ms, mode: min}",
                                        "{metric: val_accuracy, mode: min}"),
     "objective.1.metric", "an objective already"),
    ("an objective's unknown key", OBJECTIVES, ("{metric: latency_ms, mode: min}",
                                                "{metric: latency_ms, mode: min, weight: 2}"),
     "objective.1.weight", "unknown key"),
    ("cmaes on several objectives", OBJECTIVES, ("params:", "search: {sampler: cmaes}  # <-\n"
                                                 "params:"),
     "search.sampler", "cmaes searches one objective"),
    ("a constraint that does not parse", OBJECTIVES, ('["params_total <= 2e6"]',
                                                      '["params_total < 2e6"]'),
     "constraints.0", "expected 'METRIC <= NUMBER'"),
    ("a constraint on no metric", OBJECTIVES, ('["params_total <= 2e6"]',
                                               '["params <= 2e6"]'),
     "constraints.0", "did you mean 'params_total'?"),
    ("a champion metric that is no objective", OBJECTIVES, ("champion: {metric: val_accuracy,",
                                                            "champion: {metric: val_loss,"),
     "champion.metric", "'val_loss' is not an objective"),
    ("a champion bound that does not parse", OBJECTIVES, ('where: ["latency_ms <= 5"]',
                                                          'where: ["latency_ms <= fast"]'),
     "champion.where.0", "expected 'METRIC <= NUMBER'"),
    ("a warm start of several objectives", OBJECTIVES, ("params:", "search: {warm_start: {from: "
                                                        "[a]}}  # <-\nparams:"),
     "search.warm_start", "a search of several starts without one"),
    ("a warm start with constraints", CNN, ("fixed:", 'constraints: ["params_total <= 1e5"]\n'
                                            "search: {warm_start: {from: [a]}}  # <-\nfixed:"),
     "search.warm_start", "carry no constraint values"),
    ("a single objective's missing mode", CNN, ("{metric: val_accuracy, mode: max}",
                                                "{metric: val_accuracy}"),
     "objective.mode", "missing required key"),
    # trials share the search's warm pools, which have one shape
    ("a searched resource", ESN, ("  ridge:", "  workers: {type: int, low: 1, high: 2}  # <-\n"
                                            "  ridge:"),
     "params.workers", "a key of resources, not a hyperparameter"),
]


def mark(text: str, old: str, new: str) -> tuple[str, int]:
    """The broken text, and the line marked `# <-` (else the first line `new` lands on)."""
    assert old in text
    broken = text.replace(old, new, 1)
    lines = broken.splitlines()
    marked = [i for i, line in enumerate(lines, 1) if "# <-" in line]
    first = new.splitlines()[0]
    return broken, marked[0] if marked else next(i for i, x in enumerate(lines, 1) if first in x)


@pytest.mark.parametrize("case, base, change, key, words", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_spec_is_one_line_naming_file_line_and_key(tmp_path, case, base, change, key,
                                                             words):
    text, line = mark(base, *change)
    path = write(tmp_path, text)
    message = error_of(path)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert words in message, message


def test_a_spec_without_a_model_says_how_to_give_one(tmp_path):
    message = error_of(write(tmp_path, ESN.replace("model: esn\n", "")))
    assert message == (f"{tmp_path / 'space.yaml'}: model: missing required key (a model "
                       "family, or params.model to search across families)")


def test_a_missing_top_level_key_has_no_line(tmp_path):
    message = error_of(write(tmp_path, ESN.replace("objective: {metric: val_nrmse, mode: min}\n",
                                                   "")))
    assert message == f"{tmp_path / 'space.yaml'}: objective: missing required key"


@pytest.mark.parametrize("text, start", [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("- a\n- b\n", "1: the top level must be a mapping"),
    ("name: x\nmodel: [cnn\n", "3: invalid YAML"),
    ("name: x\n  model: cnn\n", "2: invalid YAML"),
    ("name: x\nmodel: !!python/object:os.system x\n", "2: invalid YAML"),
    ("name: x\x00\n", "1: invalid YAML"),
    ("a: &x [*x]\n", "1: a.0: an alias contains itself"),
])
def test_files_that_are_no_spec(tmp_path, text, start):
    path = write(tmp_path, text)
    message = error_of(path)
    assert "\n" not in message
    assert message.startswith(f"{path}:{start}" if start[0].isdigit() else f"{path}: {start}")


def test_unreadable_files(tmp_path):
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file"
    assert "is a directory" in error_of(tmp_path)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(128, 256)) * 4)
    assert error_of(garbage) == f"{garbage}: not a text file (not UTF-8)"


def test_set_overrides_are_typed_and_create_missing_keys(tmp_path):
    spec = load_spec(write(tmp_path, ESN), ["search.trials=3", "params.ridge.high=0.1",
                                            "fixed.leak_rate=0.5", "data.length=2000",
                                            "params.units={type: int, low: 10, high: 20}",
                                            "scheduler.reduction_factor=2"])
    assert spec.search.trials == 3 and spec.params["ridge"].high == 0.1
    assert spec.fixed == {"washout": 100, "leak_rate": 0.5}
    assert spec.data_options().length == 2000 and spec.params["units"].high == 20
    assert spec.scheduler.reduction_factor == 2
    cnn = load_spec(write(tmp_path, CNN), ["search.sampler=qmc", "resources.max_failures=0"])
    assert cnn.search.sampler == "qmc" and cnn.resources.max_failures == 0


@pytest.mark.parametrize("override, start", [
    ("search.trials=0", "(from --set): search.trials: Input should be greater than or equal"),
    ("params.units.low=2000", "(from --set): params.units.low: low (2000) must be less"),
    ("params.units={type: int, low: 9, high: 1}", "(from --set): params.units.low:"),
    ("fixed.unitz=5", "(from --set): fixed.unitz: unknown hyperparameter"),
    ("search.trials.max=3", "(from --set): search.trials: is not a mapping"),
    ("params.new.type=int", "(from --set): params.new.low: missing required key"),
    ("x.y=1", "(from --set): x: unknown key"),
])
def test_set_errors_say_from_set(tmp_path, override, start):
    path = write(tmp_path, ESN)
    assert error_of(path, override).startswith(f"{path} {start}")


@pytest.mark.parametrize("override", ["search.trials", "=3", "search..trials=3", "a=[1"])
def test_a_malformed_set_names_it(tmp_path, override):
    message = error_of(write(tmp_path, ESN), override)
    assert message.startswith(f"--set {override!r}:") and "\n" not in message


def test_cli_flags_override_the_file_and_the_set_overrides(tmp_path):
    path = write(tmp_path, ESN)
    spec = load_spec(path, ["search.trials=3"], trials=7, workers=3, gpus_per_worker=0.5,
                     max_concurrent=2, name="other")
    assert (spec.search.trials, spec.resources.workers, spec.resources.gpus_per_worker,
            spec.search.max_concurrent, spec.name) == (7, 3, 0.5, 2, "other")
    unchanged = load_spec(path, trials=None, workers=None, name=None)
    assert unchanged.search.trials == 4 and unchanged.name == "esn-mackey-glass"
    assert error_of(path, workers=0).startswith(f"{path} (from --workers): resources.workers:")
    with pytest.raises(TypeError):
        load_spec(path, epochs=3)


@pytest.fixture
def spaces(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "search_spaces"
    folder.mkdir()
    write(folder, ESN, "esn.yaml")
    write(folder, CNN, "cnn.yaml")
    monkeypatch.setattr(ready, "SPACES_DIR", folder)
    return folder


@pytest.mark.parametrize("arg", ["esn", "esn.yaml", "search_spaces/esn.yaml"])
def test_resolve_space_finds_a_ready_space_by_name(spaces, arg, tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # where none of these names is a file
    assert resolve_space(arg) == spaces / "esn.yaml"
    assert load_spec(resolve_space(arg)).model == "esn"


def test_resolve_space_prefers_an_existing_file(spaces, tmp_path):
    mine = write(tmp_path, CNN, "esn")
    assert resolve_space(str(mine)) == mine
    assert ready_spaces() == [spaces / "cnn.yaml", spaces / "esn.yaml"]


def test_resolve_space_lists_the_ready_ones(spaces):
    with pytest.raises(SpecError, match=r"^nosuch: no such file, nor a ready search space "
                                        r"\(ready: cnn, esn\)$"):
        resolve_space("nosuch")


def test_a_search_on_a_bucket_keeps_its_study_in_a_database_it_is_given(tmp_path, monkeypatch):
    from raysearch.study import storage_url

    spec = load_spec(write(tmp_path, ESN))
    assert storage_url(spec, "/runs") == f"sqlite:////runs/{spec.name}/optuna.db"
    monkeypatch.delenv("RAYSEARCH_STUDY_STORAGE", raising=False)
    with pytest.raises(SpecError, match="search.storage: --storage s3://b/r is a bucket"):
        storage_url(spec, "s3://b/r")
    monkeypatch.setenv("RAYSEARCH_STUDY_STORAGE", "sqlite:////head/studies.db")  # cluster.yaml
    assert storage_url(spec, "s3://b/r") == "sqlite:////head/studies.db"
    given = load_spec(write(tmp_path, ESN), ["search.storage=postgresql://db/team"])
    assert storage_url(given, "s3://b/r") == "postgresql://db/team"
