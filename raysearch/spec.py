"""The search-space file: load it, check all that can be checked before Ray starts, and say what
is wrong in one line naming the file, the line and the key path (never a traceback)."""

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from raysearch.data import DATASETS
from raysearch.models import MODELS

SPACES_DIR = Path(__file__).parent / "search_spaces"
Key = tuple[Any, ...]  # a key path: mapping keys and list indices


class SpecError(Exception):
    """One clear line for the user: '<file>:<line>: <key.path>: <problem>' (line omitted when
    unknown)."""


class _Problem(ValueError):
    """A failed check that knows which key below the model raising it is to blame: pydantic keeps
    the exception in the error's ctx, so the reported path can point at that key's line."""

    def __init__(self, path: Key, message: str) -> None:
        super().__init__(message)
        self.path = path


def _hint(key: Any, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _listed(names: Sequence[Any]) -> str:
    return ", ".join(map(str, names))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _RangeChecks(BaseModel):
    """low < high and Optuna's rules for log and step, shared by int and float params."""

    @model_validator(mode="after")
    def check_range(self) -> Any:
        low, high, step = self.low, self.high, self.step  # fields of the subclasses
        if low >= high:
            raise _Problem(("low",), f"low ({low}) must be less than high ({high})")
        if self.log and low <= 0:
            raise _Problem(("low",), f"a log range needs low > 0, got {low}")
        if step is not None and step <= 0:
            raise _Problem(("step",), f"step must be > 0, got {step}")
        # Optuna refuses log with a step (suggest_int allows only step 1 there)
        if self.log and step is not None and (isinstance(self, FloatParam) or step != 1):
            raise _Problem(("step",), "log and step cannot be combined (Optuna's rule)")
        return self


class IntParam(_Strict, _RangeChecks):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int | None = None
    when: dict[str, Any] | None = None


class FloatParam(_Strict, _RangeChecks):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: dict[str, Any] | None = None


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Any]
    when: dict[str, Any] | None = None

    @field_validator("choices")
    @classmethod
    def check_choices(cls, choices: list[Any]) -> list[Any]:
        if not choices:
            raise ValueError("needs at least one choice")
        for i, choice in enumerate(choices):
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                # what Optuna can store for a categorical
                raise _Problem((i,), "a choice must be a number, a string, a boolean or null")
            if choice in choices[:i]:
                raise _Problem((i,), f"duplicate choice {choice!r}")
        return choices


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]
_PARAM_TYPES: dict[str, type[BaseModel]] = {
    "int": IntParam, "float": FloatParam, "categorical": CategoricalParam}


class Objective(_Strict):
    metric: str
    mode: Literal["min", "max"]


class WarmStart(_Strict):
    """Earlier searches (in the same tracking store) whose trials this one starts from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
    from_: list[str] = Field(alias="from", min_length=1)
    top: int = Field(3, ge=0)  # their best configurations, run first


class Search(_Strict):
    trials: int = Field(10, ge=1)
    sampler: Literal["tpe", "random", "cmaes", "gp", "qmc"] = "tpe"
    seed: int | None = 0
    max_concurrent: int = Field(1, ge=1)
    # the Optuna study's SQL storage (optuna-dashboard reads it); default: an SQLite file in
    # <--storage>/<name>/optuna.db, which a bucket storage cannot hold
    storage: str | None = None
    # seconds from the search's start (a resumed one's: from its resume) after which no trial
    # starts; the running ones finish and the best found is promoted as usual
    time_budget_s: float | None = Field(None, gt=0)
    warm_start: WarmStart | None = None


class Scheduler(_Strict):
    type: Literal["asha", "none"] = "asha"
    max_t: int = Field(10, ge=1)  # epochs (ASHA iterations) of a trial that is never stopped
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3, gt=1)
    # a trial is stopped (as ASHA stops one) at its first epoch report past this many seconds
    # of its own (its `trial_s`, from its start in a pool)
    max_trial_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def check_grace(self) -> "Scheduler":
        if self.grace_period > self.max_t:
            raise _Problem(("grace_period",),
                           f"grace_period ({self.grace_period}) exceeds max_t ({self.max_t})")
        return self


class Resources(_Strict):
    workers: int = Field(2, ge=1)
    gpus_per_worker: float = Field(0, ge=0)
    cpus_per_worker: float = Field(1, gt=0)
    max_failures: int = Field(2, ge=0)  # restarts of a failed worker group, per trial
    # How long a trial waits for its workers before it fails: long enough for an autoscaler to
    # bring up a GPU node, short enough that a trial that can never start says so.
    start_timeout_s: float = Field(300, gt=0)
    # Trials run one after another on workers kept up for the whole search; false gives every
    # trial a fresh TorchTrainer (new processes, 10-30 s each to start)
    reuse_workers: bool = True


class DataSpec(_Strict):
    """`data:` in the file is flat (name + the data set's keys); the keys live in `options`,
    validated and with defaults filled in."""
    name: str
    options: dict[str, Any] = {}


def _explain(err: ErrorDetails) -> tuple[Key, str]:
    """A pydantic error as (loc, one-line problem)."""
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx", {})
    if isinstance(ctx.get("error"), _Problem):
        return loc + ctx["error"].path, str(ctx["error"])
    if kind == "missing":
        return loc, "missing required key"
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "union_tag_not_found":
        return loc, "missing key 'type' (int, float or categorical)"
    if kind == "union_tag_invalid":
        return loc + ("type",), f"unknown type {ctx['tag']!r} (int, float or categorical)"
    msg, value = err["msg"].removeprefix("Value error, "), err["input"]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = "Input should be a mapping (key: value, ...)"  # not pydantic's class names
    if value is None or isinstance(value, (bool, int, float, str)):
        msg += f" (got {value!r})"
    return loc, msg


def _validated(cls: type[BaseModel], values: dict[str, Any], prefix: Key,
               one_value: bool = False) -> BaseModel:
    """`values` through `cls` (strict: YAML gives real types, so `yes` is no number), or the
    first failure as a _Problem at its key; at `prefix` itself when checking `one_value`."""
    try:
        return cls.model_validate(values, strict=True)
    except ValidationError as e:
        errors = [x for x in e.errors() if x["type"] != "missing"]
        if not errors:  # a required field left to `params`: not this check's business
            return cls.model_construct(**values)
        loc, msg = _explain(errors[0])
        raise _Problem(prefix if one_value else prefix + loc, msg) from None


class Spec(_Strict):
    name: str
    model: str
    data: DataSpec
    objective: Objective
    search: Search = Field(default_factory=Search)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    resources: Resources = Field(default_factory=Resources)
    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    source: Path = Field(Path("<spec>"), exclude=True)  # the file it came from; no user key

    @field_validator("name")
    @classmethod
    def check_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError("use only letters, digits, '_', '.' and '-' (it names the MLflow "
                             "experiment and registered model)")
        return name

    @model_validator(mode="after")
    def check_against_registries(self) -> "Spec":
        if self.model not in MODELS:
            raise _Problem(("model",), f"unknown model {self.model!r}"
                           f"{_hint(self.model, list(MODELS))} (known: {_listed(MODELS)})")
        if self.data.name not in DATASETS:
            raise _Problem(("data", "name"), f"unknown data set {self.data.name!r}"
                           f"{_hint(self.data.name, list(DATASETS))} (known: {_listed(DATASETS)})")
        family, dataset = MODELS[self.model], DATASETS[self.data.name]
        known = ["name", *dataset.options.model_fields]
        for key in self.data.options:
            if key not in known:
                raise _Problem(("data", key), f"unknown key for data set '{dataset.name}'"
                               f"{_hint(key, known)} (known: {_listed(known)})")
        self.data.options = _validated(dataset.options, self.data.options, ("data",)).model_dump()
        tasks = self.tasks()
        if dataset.kind not in family.inputs or not tasks & family.tasks:
            needs = f"{_listed(sorted(family.inputs))} data for {_listed(sorted(family.tasks))}"
            raise _Problem(("model",), f"model '{self.model}' needs {needs}; data set "
                           f"'{dataset.name}' is {dataset.kind} {_listed(sorted(tasks))}")
        if self.data.options.get("mode") == "generative" and not family.generates:
            able = _listed(name for name, f in MODELS.items() if f.generates)
            raise _Problem(("data", "mode"), "generative mode runs a model on its own output; "
                           f"only model '{able}' does (use mode: direct)")
        metrics = (*dataset.metrics(tasks & family.tasks), "train_loss")
        if self.objective.metric not in metrics:
            raise _Problem(("objective", "metric"), f"data set '{dataset.name}' does not report "
                           f"{self.objective.metric!r} (it reports: {_listed(metrics)})")
        _check_hyperparams(self)
        _check_conditions(self.params)
        if "forecasting" in tasks:
            _check_causal(self)
        return self

    def check_task(self, task: str) -> None:
        """Once the data is read (a table's task is known then), the objective is one it
        reports."""
        reported = (*DATASETS[self.data.name].metrics(frozenset({task})), "train_loss")
        if self.objective.metric not in reported:
            raise SpecError(f"{self.source}: objective.metric: {self.data.options.get('path')} "
                            f"is learnt for {task}, which reports {', '.join(reported)}, not "
                            f"{self.objective.metric!r} (or set data.task)")

    def tasks(self) -> frozenset[str]:
        """What the data set may be learnt for: a table's task when `data.task` names it."""
        declared = self.data.options.get("task")
        return frozenset({declared}) if declared else DATASETS[self.data.name].tasks

    def hyperparams(self, values: dict[str, Any]) -> BaseModel:
        """A trial's hyperparameters: the fixed ones with the sampled `values` over them."""
        return MODELS[self.model].hyperparams.model_validate({**self.fixed, **values})

    def data_options(self) -> BaseModel:
        return DATASETS[self.data.name].options.model_validate(self.data.options)


def _check_hyperparams(spec: Spec) -> None:
    """Every name is one the model takes, and every value a param can take is one it accepts."""
    cls = MODELS[spec.model].hyperparams
    known = list(cls.model_fields)
    for section in ("params", "fixed"):
        for name in getattr(spec, section):
            if name in Resources.model_fields:
                raise _Problem((section, name), f"'{name}' is a key of resources, not a "
                               "hyperparameter: a search's trials share its warm workers, so "
                               "they all have its one resources shape (run one search per shape)")
            if name not in known:
                raise _Problem((section, name), f"unknown hyperparameter for model '{spec.model}'"
                               f"{_hint(name, known)} (known: {_listed(known)})")
    for name in spec.fixed:
        if name in spec.params:
            raise _Problem(("fixed", name), "also in params: a hyperparameter is either "
                           "searched or fixed")
    _validated(cls, spec.fixed, ("fixed",))
    for name, param in spec.params.items():
        path = ("params", name)
        if isinstance(param, CategoricalParam):
            for i, choice in enumerate(param.choices):
                _validated(cls, {name: choice}, path + ("choices", i), one_value=True)
            continue
        kinds = {cls.model_fields[name].annotation, *get_args(cls.model_fields[name].annotation)}
        if float not in kinds and (int not in kinds or isinstance(param, FloatParam)):
            fit = "int" if int in kinds else "categorical"
            raise _Problem(path + ("type",), f"'{name}' does not take {param.type} values: "
                           f"use type: {fit}")
        for end in ("low", "high"):
            _validated(cls, {name: getattr(param, end)}, path + (end,), one_value=True)


def _check_causal(spec: Spec) -> None:
    """A forecaster reads only the past: a bidirectional recurrent layer's backward direction
    would read, at each step, the very values it is to predict."""
    param = spec.params.get("bidirectional")
    if spec.fixed.get("bidirectional") is True:
        path: Key = ("fixed", "bidirectional")
    elif isinstance(param, CategoricalParam) and True in param.choices:
        path = ("params", "bidirectional", "choices", param.choices.index(True))
    else:
        return
    raise _Problem(path, "a bidirectional model reads the steps after the one it forecasts, "
                   "which hold its targets; forecasting takes bidirectional: false")


def _check_conditions(params: dict[str, Param]) -> None:
    """`when:` names another categorical param and some of its choices, and no cycle."""
    for name, param in params.items():
        for other, allowed in (param.when or {}).items():
            path = ("params", name, "when", other)
            target = params.get(other)
            if other == name:
                raise _Problem(path, "a param cannot depend on itself")
            if target is None:
                raise _Problem(path, f"no param named {other!r}{_hint(other, list(params))} "
                               f"(params: {_listed(params)})")
            if not isinstance(target, CategoricalParam):
                raise _Problem(path, f"'{other}' is of type {target.type}; `when` needs a "
                               "categorical param")
            values = allowed if isinstance(allowed, list) else [allowed]
            if not values:
                raise _Problem(path, f"names no choice of '{other}'")
            wrong = [v for v in values if v not in target.choices]
            if wrong:
                raise _Problem(path, f"{wrong[0]!r} is not a choice of '{other}' "
                               f"(choices: {_listed(target.choices)})")
    for name in params:
        cycle = _cycle_from(name, params, [])
        if cycle:
            raise _Problem(("params", name, "when"), "conditions go round in a circle: "
                           + " -> ".join(cycle))


def _cycle_from(name: str, params: dict[str, Param], trail: list[str]) -> list[str] | None:
    if name in trail:
        return [*trail[trail.index(name):], name]
    for other in params[name].when or {}:
        cycle = _cycle_from(other, params, [*trail, name])
        if cycle:
            return cycle
    return None


# ---- reading the file ------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.1 wants a dot and a signed exponent in a float, so it reads 1e-9 as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."))  # ints match first: the resolvers YAML already has come before this
_MERGE = "tag:yaml.org,2002:merge"


@dataclass
class _Doc:
    file: str  # as the user gave it
    data: dict[str, Any]
    lines: dict[Key, int]  # 1-based line of every key and list item
    origins: dict[Key, str] = field(default_factory=dict)  # keys set by a flag, and which

    def where(self, path: Key) -> str:
        """':<line>' or ' (from <flag>)': the deepest part of `path` that the file or a flag
        wrote (a missing key is reported at its parent)."""
        for n in range(len(path), 0, -1):
            part = path[:n]
            if part in self.origins:
                return f" (from {self.origins[part]})"
            if part in self.lines:
                return f":{self.lines[part]}"
            made = [o for key, o in self.origins.items() if key[:n] == part]
            if made:  # `--set a.b=1` created `a`
                return f" (from {made[0]})"
        return ""

    def error(self, path: Key, problem: str, line: int | None = None) -> SpecError:
        where = f":{line}" if line else self.where(path)
        key = f"{_dotted(path)}: " if path else ""
        return SpecError(f"{self.file}{where}: {key}{problem}".replace("\n", " "))


def _dotted(path: Key) -> str:
    """a.b.0.c; a key with a character that does not print (a tab, a line break) quoted, so the
    message stays one line and shows it."""
    return ".".join(str(k) if str(k).isprintable() else repr(k) for k in path)


def _read(file: str) -> str:
    try:
        return Path(file).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{file}: is a directory, not a search-space file") from None
    except OSError as e:
        raise SpecError(f"{file}: cannot read it: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{file}: not a text file (not UTF-8)") from None


def _parse(file: str, text: str) -> _Doc:
    try:
        loader = _Loader(text)  # checks every character of a str at once
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        line = text.count("\n", 0, e.position) + 1
        raise SpecError(f"{file}:{line}: invalid YAML: {str(e).splitlines()[0]}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(f"{file}: the file is empty")
        doc = _Doc(file, {}, {})
        data = _build(doc, loader, node, (), frozenset())
    except yaml.MarkedYAMLError as e:
        raise SpecError(f"{file}{_yaml_problem(e)}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError(f"{file}:{node.start_mark.line + 1}: the top level must be a mapping "
                        f"(name:, model:, data:, ...), not a {type(data).__name__}")
    doc.data = data
    return doc


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    """':<line>: invalid YAML: <context (line n)>, <problem>': where it broke, and what was open
    (an unclosed bracket or quote starts lines earlier)."""
    mark = e.problem_mark or e.context_mark
    where = f":{mark.line + 1}" if mark else ""
    context = e.context or ""
    if e.context and e.context_mark and mark and e.context_mark.line != mark.line:
        context += f" (line {e.context_mark.line + 1})"
    return f"{where}: invalid YAML: " + ", ".join(x for x in (context, e.problem) if x)


def _build(doc: _Doc, loader: _Loader, node: yaml.Node, path: Key, stack: frozenset) -> Any:
    """The node as Python values, recording each key's line; duplicate keys are errors."""
    line = node.start_mark.line + 1
    if id(node) in stack:
        raise doc.error(path, "an alias contains itself", line)
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node)
        except ValueError as e:  # e.g. a date that does not exist
            raise doc.error(path, str(e), line) from None
    stack = stack | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            doc.lines[path + (i,)] = item.start_mark.line + 1
            items.append(_build(doc, loader, item, path + (i,), stack))
        return items
    own = [(k, v) for k, v in node.value if k.tag != _MERGE]
    loader.flatten_mapping(node)  # `<<: *anchor` entries come first; keys of the node win
    merged = node.value[: len(node.value) - len(own)]
    result: dict[Any, Any] = {}
    for i, (key_node, value_node) in enumerate(own + merged):
        key = _build(doc, loader, key_node, path, stack)
        key_line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise doc.error(path, "a key must be a plain value", key_line)
        if key in result:
            if i >= len(own):
                continue
            raise doc.error(path + (key,), f"duplicate key (first at line "
                            f"{doc.lines[path + (key,)]})", key_line)
        doc.lines[path + (key,)] = key_line
        result[key] = _build(doc, loader, value_node, path + (key,), stack)
    return result


# ---- overrides and validation ----------------------------------------------------------------

_CLI: dict[str, tuple[Key, str]] = {
    "trials": (("search", "trials"), "--trials"),
    "workers": (("resources", "workers"), "--workers"),
    "gpus_per_worker": (("resources", "gpus_per_worker"), "--gpus-per-worker"),
    "max_concurrent": (("search", "max_concurrent"), "--max-concurrent"),
    "name": (("name",), "--name"),
}


def _put(doc: _Doc, path: Key, value: Any, origin: str) -> None:
    node = doc.data
    for i, key in enumerate(path[:-1]):
        if node.get(key) is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            raise SpecError(f"{doc.file} (from {origin}): {_dotted(path[:i + 1])}: is not a "
                            f"mapping, so it has no key {_dotted(path[i + 1:])!r}")
        node = node[key]
    node[path[-1]] = value
    doc.origins[path] = origin
    # what the file had there is gone: its lines must not locate errors in the new value
    doc.lines = {key: line for key, line in doc.lines.items() if key[:len(path)] != path}


def _apply_set(doc: _Doc, item: str) -> None:
    key, eq, text = item.partition("=")
    path = tuple(key.strip().split("."))
    if not eq or not all(path):
        raise SpecError(f"--set {item!r}: expected key.path=value, e.g. search.trials=20")
    try:
        value = yaml.load(text, Loader=_Loader)  # typed like the file: 3 is an int, 1e-3 a float
    except yaml.YAMLError as e:
        raise SpecError(f"--set {item!r}: the value is not valid YAML: "
                        f"{str(e).splitlines()[0]}") from None
    _put(doc, path, value, "--set")


def _check_keys(doc: _Doc) -> None:
    """Unknown keys, with a hint for typos (pydantic would only say 'extra inputs')."""
    sections = {"": Spec, "objective": Objective, "search": Search, "scheduler": Scheduler,
                "resources": Resources}
    for section, cls in sections.items():
        path = (section,) if section else ()
        mapping = doc.data.get(section) if section else doc.data
        known = [k for k in cls.model_fields if k != "source"]
        for key in mapping if isinstance(mapping, dict) else ():
            if key not in known:
                raise doc.error(path + (key,), f"unknown key{_hint(key, known)} "
                                f"(known: {_listed(known)})")
    params = doc.data.get("params")
    for name, param in params.items() if isinstance(params, dict) else ():
        kind = param.get("type") if isinstance(param, dict) else None
        known = list(_PARAM_TYPES[kind].model_fields) if str(kind) in _PARAM_TYPES else []
        for key in param if known else ():
            if key not in known:
                raise doc.error(("params", name, key), f"unknown key for a {kind} param"
                                f"{_hint(key, known)} (known: {_listed(known)})")


def _clean(data: Any, loc: Key) -> Key:
    """A pydantic loc as a key path of the file: without union tags ('float') and '[key]'."""
    path: list[Any] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("type") == part:
            continue
        if part == "[key]":
            continue
        path.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(path)


_OPTIONAL = ("search", "scheduler", "resources", "params", "fixed")


def _validate(doc: _Doc, source: Path) -> Spec:
    _check_keys(doc)
    # an empty section (`fixed:` with nothing under it) means its default
    raw = {k: v for k, v in doc.data.items() if v is not None or k not in _OPTIONAL}
    if isinstance(raw.get("data"), dict):
        options = dict(raw["data"])
        raw["data"] = {"name": options.pop("name")} if "name" in options else {}
        raw["data"]["options"] = options
    try:
        return Spec.model_validate({**raw, "source": source}, strict=True)
    except ValidationError as e:
        loc, problem = _explain(e.errors()[0])
        raise doc.error(_clean(doc.data, loc), problem) from None


def load_spec(path: str | Path, overrides: Sequence[str] = (), **cli: Any) -> Spec:
    """Read, override (`--set key.path=value` strings, then the CLI flags in `cli`, None meaning
    not given) and validate a search-space file. Raises SpecError."""
    try:
        doc = _parse(str(path), _read(str(path)))
        for item in overrides:
            _apply_set(doc, item)
        for flag, value in cli.items():
            if flag not in _CLI:
                raise TypeError(f"load_spec() got an unexpected keyword argument {flag!r}")
            if value is not None:
                key, origin = _CLI[flag]
                _put(doc, key, value, origin)
        return _validate(doc, Path(path))
    except RecursionError:  # YAML's parser and pydantic recurse once per level
        raise SpecError(f"{path}: nested too deeply to be a search space") from None


def ready_spaces() -> list[Path]:
    return sorted(SPACES_DIR.glob("*.yaml"))


def resolve_space(arg: str) -> Path:
    """A file path, or the name of a ready space (`esn`, `esn.yaml`, `search_spaces/esn.yaml`)."""
    if Path(arg).is_file():
        return Path(arg)
    name = Path(arg).name
    ready = SPACES_DIR / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if ready.is_file():
        return ready
    names = _listed([p.stem for p in ready_spaces()]) or "none"
    raise SpecError(f"{arg}: no such file, nor a ready search space (ready: {names})")
