"""Data sets by name."""

from raysearch.data import cifar10, digits, imagefolder, mackey_glass, sequences, series
from raysearch.data.base import (
    CLASSIFICATION_METRICS,
    FORECASTING_METRICS,
    DataError,
    DataInfo,
    DataSet,
    Split,
)

DATASETS: dict[str, DataSet] = {
    "digits": DataSet(
        "digits", digits.DigitsOptions, "image", "classification", CLASSIFICATION_METRICS,
        digits.load,
    ),
    "seq_digits": DataSet(
        "seq_digits", digits.DigitsOptions, "sequence", "classification",
        CLASSIFICATION_METRICS, digits.load_sequences,
    ),
    "mackey_glass": DataSet(
        "mackey_glass", mackey_glass.MackeyGlassOptions, "sequence", "forecasting",
        FORECASTING_METRICS, mackey_glass.load,
    ),
    "sequences": DataSet(
        "sequences", sequences.SequencesOptions, "sequence", "classification",
        CLASSIFICATION_METRICS, sequences.load, user_file=True,
    ),
    "series": DataSet(
        "series", series.SeriesOptions, "sequence", "forecasting", FORECASTING_METRICS,
        series.load, user_file=True,
    ),
    "cifar10": DataSet(
        "cifar10", cifar10.Cifar10Options, "image", "classification", CLASSIFICATION_METRICS,
        cifar10.load,
    ),
    "imagefolder": DataSet(
        "imagefolder", imagefolder.ImageFolderOptions, "image", "classification",
        CLASSIFICATION_METRICS, imagefolder.load,
    ),
}

__all__ = ["DATASETS", "DataError", "DataInfo", "DataSet", "Split"]
