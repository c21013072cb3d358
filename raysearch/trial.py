"""One Tune trial: a function trainable that trains over a Ray Train worker group.

Ray Train V2 takes no Trainer inside a Tuner: the trainable starts the TorchTrainer itself and
TuneReportCallback forwards each report of rank 0 to Tune, which is what lets ASHA stop it.
"""

import os
from typing import Any

import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from raysearch.train_loop import train_loop

# The controller polls its workers at this pace; reports reach Tune no faster. Ray's 2 s default
# cost about 2 s per epoch report in a 2-worker trial (FACTS.md); 0.2 s costs little CPU.
HEALTH_CHECK_INTERVAL_S = "0.2"

# The trial's own actor only waits for its TorchTrainer, so it holds memory but no CPU: on a
# 2-core machine both cores go to the trial's two workers.
TRIAL_RESOURCES = {"cpu": 0, "memory": 256 * 2**20}


def run_trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """`config`: the hyperparameters Optuna sampled plus the fixed ones; `setup`: the search's
    model, data, objective, resources and storage (the same for every trial)."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    trial_id = tune.get_context().get_trial_id()
    res = setup["resources"]
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"setup": {**setup, "trial_id": trial_id}, "hyper": config},
        scaling_config=ray.train.ScalingConfig(
            num_workers=res["workers"],
            use_gpu=res["gpus_per_worker"] > 0,
            resources_per_worker={"CPU": res["cpus_per_worker"], "GPU": res["gpus_per_worker"]},
        ),
        run_config=ray.train.RunConfig(
            # Stable (no timestamp), so a restored search finds the run again.
            name=f"{setup['name']}-{trial_id}",
            storage_path=setup["train_storage"],
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=res["max_failures"]),
            # Keeps the best checkpoint (the one promoted) and the latest (the one resumed).
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=setup["metric"],
                checkpoint_score_order=setup["mode"],
            ),
        ),
    )
    trainer.fit()


def trainable(setup: dict[str, Any]):
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup), TRIAL_RESOURCES)
