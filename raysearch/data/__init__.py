"""Data sets by name."""

from raysearch.data import digits, mackey_glass
from raysearch.data.base import (
    CLASSIFICATION_METRICS,
    FORECASTING_METRICS,
    DataInfo,
    DataSet,
    Split,
)

DATASETS: dict[str, DataSet] = {
    "digits": DataSet(
        "digits", digits.DigitsOptions, "image", "classification", CLASSIFICATION_METRICS,
        digits.load,
    ),
    "mackey_glass": DataSet(
        "mackey_glass", mackey_glass.MackeyGlassOptions, "sequence", "forecasting",
        FORECASTING_METRICS, mackey_glass.load,
    ),
}

__all__ = ["DATASETS", "DataInfo", "DataSet", "Split"]
