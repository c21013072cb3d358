"""raysearch: hyperparameter search on Ray Tune, Optuna and MLflow for PyTorch models."""

from raysearch.checkpoint import CheckpointError, load

__all__ = ["CheckpointError", "load"]
