"""raysearch: hyperparameter search on Ray Tune, Optuna and MLflow for PyTorch models."""

__all__ = ["CheckpointError", "load"]


def __getattr__(name: str):
    # torch only when a model is loaded: the search's actors (dispatcher, Tune trials) import
    # this package and need none of it
    if name in __all__:
        from raysearch import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'raysearch' has no attribute {name!r}")
