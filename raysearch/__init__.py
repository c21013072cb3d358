"""raysearch: hyperparameter search on Ray Tune, Optuna and MLflow for PyTorch models."""

from raysearch.checkpoint import load

__all__ = ["load"]
