"""A searched hyperparameter: an int or float range or a categorical, with Optuna's rules."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raysearch.spec.errors import Problem


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _RangeChecks(BaseModel):
    """low < high and Optuna's rules for log and step, shared by int and float params."""

    @model_validator(mode="after")
    def check_range(self) -> Any:
        low, high, step = self.low, self.high, self.step  # fields of the subclasses
        if low >= high:
            raise Problem(("low",), f"low ({low}) must be less than high ({high})")
        if self.log and low <= 0:
            raise Problem(("low",), f"a log range needs low > 0, got {low}")
        if step is not None and step <= 0:
            raise Problem(("step",), f"step must be > 0, got {step}")
        # Optuna refuses log with a step (suggest_int allows only step 1 there)
        if self.log and step is not None and (isinstance(self, FloatParam) or step != 1):
            raise Problem(("step",), "log and step cannot be combined (Optuna's rule)")
        return self


class IntParam(Strict, _RangeChecks):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int | None = None
    when: dict[str, Any] | None = None


class FloatParam(Strict, _RangeChecks):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: dict[str, Any] | None = None


class CategoricalParam(Strict):
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
                raise Problem((i,), "a choice must be a number, a string, a boolean or null")
            if choice in choices[:i]:
                raise Problem((i,), f"duplicate choice {choice!r}")
        return choices


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES: dict[str, type[BaseModel]] = {
    "int": IntParam, "float": FloatParam, "categorical": CategoricalParam}

