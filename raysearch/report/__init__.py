"""What a search leaves to look at: trials.csv (or .json) with a row per trial, report.html
for one search, comparison.html for several on one data set. `raysearch report` writes them;
every search writes its own at its end."""

from pathlib import Path

from mlflow import MlflowClient

from raysearch.report import compare, single
from raysearch.report.records import (
    ReportError,
    SearchInfo,
    SearchRecord,
    TrialRecord,
    load,
    log_info,
    rows,
    write_table,
)

__all__ = ["ReportError", "SearchInfo", "SearchRecord", "TrialRecord", "load", "log_info",
           "write"]


def write(client: MlflowClient, records: list[SearchRecord], out: Path, fmt: str = "csv"
          ) -> list[Path]:
    """The files for searches `records` (see load) in folder `out`: one search's report.html,
    or several searches' comparison.html, and the trials table; their paths."""
    if len(records) > 1:
        compare.check_comparable(records)
    out.mkdir(parents=True, exist_ok=True)
    table = write_table([row for record in records for row in rows(record)], out, fmt)
    page = (single.write(client, records[0], out) if len(records) == 1
            else compare.write(records, out))
    return [page, table]
