"""What a search prints by default: raysearch's own view, its summary, and real warnings and
errors. The libraries under it report their routine progress too: MLflow's database set-up,
Optuna's study notices and its warnings that options raysearch chose for the sampler
(`group`, ...) are experimental, Ray's INFO lines. `raysearch tune -v` leaves all of them on.
"""

import logging
import os
import warnings

import optuna

QUIET_LEVEL = logging.WARNING  # what Ray's own loggers keep: ray.init(logging_level=...)


def quiet_libraries() -> None:
    logging.getLogger("ray").setLevel(QUIET_LEVEL)  # ray.init sets it again, to logging_level
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # MLflow's artifact progress bars around the champion's registration
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
