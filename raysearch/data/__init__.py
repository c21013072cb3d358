"""Data sets by name."""

from raysearch.data import cifar10, digits, imagefolder, mackey_glass, sequences, series, table
from raysearch.data.base import TASK_METRICS, DataError, DataInfo, DataSet, Split

CLASSIFICATION, FORECASTING = frozenset({"classification"}), frozenset({"forecasting"})

DATASETS: dict[str, DataSet] = {
    "digits": DataSet("digits", digits.DigitsOptions, "image", CLASSIFICATION, digits.load),
    "seq_digits": DataSet("seq_digits", digits.DigitsOptions, "sequence", CLASSIFICATION,
                          digits.load_sequences),
    "mackey_glass": DataSet("mackey_glass", mackey_glass.MackeyGlassOptions, "sequence",
                            FORECASTING, mackey_glass.load),
    "sequences": DataSet("sequences", sequences.SequencesOptions, "sequence", CLASSIFICATION,
                         sequences.load, user_file=True),
    "series": DataSet("series", series.SeriesOptions, "sequence", FORECASTING, series.load,
                      user_file=True),
    # classified or regressed as its target column is categorical or numeric: which, and so
    # what it reports, is known once the file is read (search.inputs checks the objective then)
    "table": DataSet("table", table.TableOptions, "table",
                     frozenset({"classification", "regression"}), table.load, user_file=True),
    "cifar10": DataSet("cifar10", cifar10.Cifar10Options, "image", CLASSIFICATION,
                       cifar10.load),
    "imagefolder": DataSet("imagefolder", imagefolder.ImageFolderOptions, "image",
                           CLASSIFICATION, imagefolder.load),
}

__all__ = ["DATASETS", "TASK_METRICS", "DataError", "DataInfo", "DataSet", "Split"]
