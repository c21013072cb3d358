"""What a model costs, as a trial measures it: weights counted as trained or fixed, the time of
a forward pass, and the memory training took."""

import torch

from raysearch.costs import COST_METRICS, Costs, parameter_counts
from raysearch.data import DATASETS
from raysearch.models import MODELS
from raysearch.models.cnn import CNN


def test_a_cnn_trains_all_its_weights_and_its_batchnorm_statistics_are_not_weights():
    cnn = CNN(1, 10, channels=4)
    total, trainable = parameter_counts(cnn)
    assert total == trainable == sum(p.numel() for p in cnn.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in cnn.modules())


def test_an_esn_trains_only_its_readout():
    _, info = DATASETS["mackey_glass"].load(DATASETS["mackey_glass"].options(length=600))
    esn = MODELS["esn"].build(MODELS["esn"].hyperparams(units=50, density=0.1), info)
    total, trainable = parameter_counts(esn)
    assert trainable == 50 * 1 + 1  # readout weights and bias
    assert total == trainable + 50 * 50 + 50 * 1 + 50 + 1  # + reservoir, input, bias, centre


def test_costs_are_measured_once_and_memory_and_time_grow_with_the_trial():
    torch.manual_seed(0)
    cnn = CNN(1, 10, channels=4).train()
    costs = Costs(torch.device("cpu"), torch.randn(64, 1, 8, 8))
    first = costs(cnn)
    assert set(first) == set(COST_METRICS)
    assert first["latency_ms"] > 0 and first["throughput"] > 0 and first["trial_s"] > 0
    assert cnn.training  # measured in eval mode, given back as it was
    held = torch.ones(64 * 2**20 // 4)  # 64 MB that training would hold at its peak
    held.add_(1)
    del held
    later = costs(cnn)
    assert later["peak_memory_mb"] >= 60
    assert later["trial_s"] > first["trial_s"]
    assert {k: later[k] for k in ("latency_ms", "throughput", "params_total")} == {
        k: first[k] for k in ("latency_ms", "throughput", "params_total")}
