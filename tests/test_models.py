"""Every model family on every data set it declares, without Ray: shapes, a save/load round
trip, chunk-parallel reservoir harvesting, on-device augmentation, and the data sets that read
from disk (an image folder made here; CIFAR-10 absent, offline)."""

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import raysearch
from raysearch import checkpoint
from raysearch.data import DATASETS, DataError
from raysearch.fit.gradient import augment, windows
from raysearch.models import MODELS
from raysearch.models.esn import harvest

SMALL = {"esn": {"units": 40}, "resnet18": {"width": 8}, "resnet34": {"width": 8},
         "resnet50": {"width": 8}, "cnn": {"channels": 4}, "fcn": {"filters": 8},
         # digits are 8 px and one channel: resized to 17 px, repeated to three channels
         "torchvision": {"arch": "squeezenet1_1"},
         **{cell: {"hidden_size": 16, "num_layers": 2, "bidirectional": True}
            for cell in ("rnn", "lstm", "gru")}}
OFFLINE = {"digits": {}, "seq_digits": {}, "mackey_glass": {"length": 600}}


def pairs():
    for model, family in MODELS.items():
        for data, dataset in DATASETS.items():
            if data in OFFLINE and dataset.kind in family.inputs and dataset.task in family.tasks:
                yield model, data


@pytest.mark.parametrize("model, data", list(pairs()))
def test_each_family_trains_on_its_data_and_loads_back(model, data, tmp_path):
    family, dataset = MODELS[model], DATASETS[data]
    splits, info = dataset.load(dataset.options(**OFFLINE[data]))
    net = family.build(family.hyperparams(**SMALL[model]), info)
    x, _ = splits["val"]
    out = net.eval()(x[:4] if info.task == "classification" else x[None, :50])
    expected = (4, info.num_outputs) if info.task == "classification" else (1, 50, 1)
    assert tuple(out.shape) == expected

    again = raysearch.load(checkpoint.save(tmp_path / "m", model, net))
    sample = x[:4] if info.task == "classification" else x[None, :50]
    assert torch.equal(again(sample), out)


def test_the_seq_digits_are_the_digits_read_row_by_row():
    images, _ = DATASETS["digits"].load(DATASETS["digits"].options())
    rows, info = DATASETS["seq_digits"].load(DATASETS["seq_digits"].options())
    assert info.input_shape == (8,)
    assert torch.equal(rows["train"][0][5], images["train"][0][5, 0])


def test_chunk_parallel_harvest_equals_the_sequential_one_after_the_washout():
    dataset = DATASETS["mackey_glass"]
    splits, info = dataset.load(dataset.options(length=3000))
    u, y = splits["train"]
    esn = MODELS["esn"].build(MODELS["esn"].hyperparams(units=200, spectral_radius=0.9,
                                                         leak_rate=0.5, layers=2), info)
    sequential, targets = harvest(esn, u, y, 0, len(u), washout=200)
    pieces, same_targets = harvest(esn, u, y, 0, len(u), washout=200, pieces=8)
    assert sequential.shape == pieces.shape == (len(u) - 200, 400)
    assert torch.equal(targets, same_targets)
    assert (sequential - pieces).abs().max().item() < 1e-5


def test_forecasting_windows_overlap_by_half():
    u = torch.arange(10.0)[:, None]
    x, y = windows(u, u + 1, 4)
    assert x.shape == (4, 4, 1) and x[1, :, 0].tolist() == [2, 3, 4, 5]
    assert torch.equal(y, x + 1)


def test_augmentation_crops_and_flips_each_image_of_a_batch():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float).view(2, 3, 6, 6)
    seen = set()
    for seed in range(20):
        out = augment(x, torch.Generator().manual_seed(seed), pad=2)
        assert out.shape == x.shape
        for image, original in zip(out, x, strict=True):
            # the central 2x2 of a 6x6 image survives any crop within 2 px padding
            centre = original[:, 2:4, 2:4]
            windows_ = [image[:, i:i + 2, j:j + 2] for i in range(5) for j in range(5)]
            assert any(torch.equal(w, centre) or torch.equal(w, centre.flip(2))
                       for w in windows_)
        seen.add(tuple(out[0, 0].flatten().tolist()))
    assert len(seen) > 5  # the crops differ


def test_an_image_folder_is_split_and_labelled_by_its_class_folders(tmp_path):
    for c, colour in enumerate(["red", "green", "blue"]):
        (tmp_path / f"class{c}").mkdir()
        for i in range(10):
            Image.new("RGB", (40 + i, 30), colour).save(tmp_path / f"class{c}" / f"{i}.png")
    dataset = DATASETS["imagefolder"]
    splits, info = dataset.load(dataset.options(root=str(tmp_path), image_size=16))
    assert info.input_shape == (3, 16, 16) and info.num_outputs == 3
    assert sum(len(splits[s][0]) for s in ("train", "val", "test")) == 30
    x, y = splits["train"]
    red = x[y == 0]
    assert (red[:, 0] > red[:, 1]).all()  # class 0 is the red folder


def test_a_streamed_image_folder_reads_the_same_images_from_their_files(tmp_path, monkeypatch):
    for c, colour in enumerate(["red", "green"]):
        (tmp_path / f"class{c}").mkdir()
        for i in range(6):
            Image.new("RGB", (20, 24 + i), colour).save(tmp_path / f"class{c}" / f"{i}.png")
    dataset = DATASETS["imagefolder"]
    held, _ = dataset.load(dataset.options(root=str(tmp_path), image_size=16))
    monkeypatch.chdir(tmp_path.parent)  # a relative root: workers run in their own folders
    streamed, info = dataset.load(dataset.options(root=tmp_path.name, image_size=16, stream=True))
    assert info.input_shape == (3, 16, 16)
    assert all(Path(p).is_absolute() for p in streamed["train"].paths)
    for split in ("train", "val", "test"):
        files, (x, y) = streamed[split], held[split]
        assert len(files) == len(x) and torch.equal(files.labels, y)
        images = torch.stack([files[i][0] for i in range(len(files))])
        assert images.dtype == torch.uint8  # decoded as drawn, normalized on the device
        assert torch.allclose(files.normalizer(torch.device("cpu"))(images), x)


@pytest.mark.parametrize("stream", [False, True])
def test_an_image_folder_too_small_for_its_splits_is_refused(tmp_path, stream):
    for c in range(2):
        (tmp_path / f"class{c}").mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / f"class{c}" / f"{i}.png")
    dataset = DATASETS["imagefolder"]
    with pytest.raises(DataError, match="a split has no images"):
        dataset.load(dataset.options(root=str(tmp_path), image_size=8, stream=stream))


def test_a_cifar10_copy_on_disk_loads_as_normalized_tensors(tmp_path, monkeypatch):
    """The python-pickle layout of cifar-10-batches-py/, 10 images a batch. The files are not
    the real ones, so torchvision's checksum test is told they are."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, 10).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))

    dataset = DATASETS["cifar10"]
    splits, info = dataset.load(dataset.options(root=str(tmp_path / "cifar"), val_fraction=0.2))
    assert {name: len(x) for name, (x, _) in splits.items()} == {"train": 40, "val": 10,
                                                                  "test": 10}
    assert splits["train"][0].shape[1:] == info.input_shape == (3, 32, 32)
    assert info.num_outputs == 10 and info.augment
    first = pickle.loads((folder / "test_batch").read_bytes())
    pixels = torch.from_numpy(first["data"][0].reshape(3, 32, 32)).float() / 255
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    assert torch.allclose(splits["test"][0][0], (pixels - mean[:, None, None])
                          / std[:, None, None], atol=1e-5)
    assert splits["test"][1].tolist() == first["labels"]


def test_cifar10_offline_and_absent_says_which_file_to_put_where(tmp_path):
    dataset = DATASETS["cifar10"]
    with pytest.raises(DataError) as info:
        dataset.load(dataset.options(root=str(tmp_path / "cifar")))
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "cifar") in message
    assert not (tmp_path / "cifar").exists()


def test_pretrained_torchvision_weights_load_from_torch_home_all_but_the_head(tmp_path,
                                                                             monkeypatch):
    from torchvision.models import get_model

    from raysearch.models import zoo

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    imagenet = get_model("mobilenet_v3_small", weights=None)  # as if downloaded there
    file = zoo.weights_file("mobilenet_v3_small")
    file.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), file)
    zoo.ensure_weights("mobilenet_v3_small")  # present: nothing fetched

    _, info = DATASETS["digits"].load(DATASETS["digits"].options())
    family = MODELS["torchvision"]
    net = family.build(family.hyperparams(arch="mobilenet_v3_small", pretrained=True,
                                          freeze=1.0), info)
    mine, theirs = net.model.state_dict(), imagenet.state_dict()
    head = zoo.head_name(net.model, info.num_outputs)
    assert head == "classifier.3" and mine[f"{head}.weight"].shape == (10, 1024)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if not k.startswith(head))
    # freeze 1.0: the head alone trains
    assert {n for n, p in net.model.named_parameters() if p.requires_grad} == {
        f"{head}.weight", f"{head}.bias"}


def test_pretrained_torchvision_weights_offline_and_absent_say_which_file_to_put_where(
        tmp_path, monkeypatch):
    from raysearch.models import zoo

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DataError) as info:
        zoo.prepare({"pretrained": True}, {"arch": ["mobilenet_v3_small"]})
    message = str(info.value)
    assert "mobilenet_v3_small-047dcff4.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message and "\n" not in message


def test_an_unknown_torchvision_arch_names_the_closest(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="did you mean efficientnet_b0"):
        MODELS["torchvision"].hyperparams(arch="efficentnet_b0")


def fit_readout(esn, u: torch.Tensor, y: torch.Tensor, washout: int, ridge: float) -> None:
    """The ridge readout over one sequential harvest (a trial sums the same over chunks)."""
    esn.center_on(u)
    states, targets = harvest(esn, u, y, 0, len(u), washout)
    a = torch.cat([states, states.new_ones(len(states), 1)], dim=1).double()
    w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype),
                           a.T @ targets.double())
    esn.readout.weight.data.copy_(w[:-1].T)
    esn.readout.bias.data.copy_(w[-1])


def test_an_esn_saved_before_inputs_were_centered_loads_with_a_zero_center():
    _, info = DATASETS["mackey_glass"].load(DATASETS["mackey_glass"].options(length=600))
    esn = MODELS["esn"].build(MODELS["esn"].hyperparams(units=20), info)
    weights = esn.state_dict()
    del weights["input_center"]
    again = MODELS["esn"].constructor(**esn.kwargs)
    again.input_center.fill_(1.0)
    again.load_state_dict(weights)
    u = torch.rand(2, 30, 1)
    assert again.input_center.eq(0).all() and torch.equal(again(u), esn(u))


def test_a_generative_esn_reproduces_a_sine_wave_on_its_own_output():
    wave = torch.sin(2 * math.pi * torch.arange(1400.0) / 25)[:, None] + 0.5
    u, y = wave[:-1], wave[1:]
    _, info = DATASETS["mackey_glass"].load(DATASETS["mackey_glass"].options(length=600))
    esn = MODELS["esn"].build(MODELS["esn"].hyperparams(units=100, spectral_radius=0.9,
                                                         leak_rate=0.5), info)
    fit_readout(esn, u[:1000], y[:1000], washout=100, ridge=1e-8)
    # reads the wave up to step 999, then 200 steps (8 periods) on its own output
    free = esn.generate(u[None, 800:1000], 200)[0]
    assert (free - wave[1000:1200]).abs().max().item() < 1e-3
    assert esn.input_center.item() == pytest.approx(0.5, abs=0.01)


def test_a_generative_esn_runs_84_steps_on_its_own_output(tmp_path):
    """Jaeger's NRMSE84 protocol: teacher-forced training, then 84 free-running steps."""
    from PIL import Image

    from raysearch.diagnostics import free_run_plot
    from raysearch.metrics import free_run_metrics

    dataset = DATASETS["mackey_glass"]
    splits, info = dataset.load(dataset.options(mode="generative", horizon=84, length=4500))
    assert info.free_run == 84
    u, y = splits["train"]
    assert torch.equal(u[1:], y[:-1])  # trained one step ahead, whatever the horizon
    esn = MODELS["esn"].build(MODELS["esn"].hyperparams(units=400, spectral_radius=0.9,
                                                         leak_rate=0.3), info)
    fit_readout(esn, u, y, washout=100, ridge=1e-8)
    scores = free_run_metrics(esn, splits["val"][0], info, washout=100)
    assert scores["val_nrmse"] < 0.1
    untrained = MODELS["esn"].build(MODELS["esn"].hyperparams(units=400), info)
    assert free_run_metrics(untrained, splits["val"][0], info, washout=100)["val_nrmse"] > 0.5
    # the champion's diagnostics draw such free runs against the series
    path = free_run_plot(esn, splits["test"][0], 100, 84, tmp_path, "test")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[1] > 300
