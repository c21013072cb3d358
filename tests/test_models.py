"""Every model family on every data set it declares, without Ray: shapes, a save/load round
trip, chunk-parallel reservoir harvesting, on-device augmentation, and the data sets that read
from disk (an image folder made here; CIFAR-10 absent, offline)."""

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_sequences, write_series, write_table
from PIL import Image

import raysearch
from raysearch import checkpoint
from raysearch.data import DATASETS, DataError, DataInfo
from raysearch.data.arrays import MappedArrays
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
            if data in OFFLINE and dataset.kind in family.inputs and dataset.tasks & family.tasks:
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


def test_a_csv_series_is_split_in_time_and_forecast_per_target(tmp_path):
    from raysearch.metrics import forecast_metrics, forecast_sums

    dataset = DATASETS["series"]
    options = dataset.options(path=str(write_series(tmp_path / "s.csv")), target=["a", "b"],
                              inputs=["a", "b", "noise"], time="time", horizon=3)
    splits, info = dataset.load(options)
    assert info.input_shape == (3,) and info.num_outputs == 2 and info.task == "forecasting"
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == [239, 79, 79]
    u, y = splits["train"]
    assert torch.allclose(y[0], u[3, :2])  # three steps ahead, in time order
    # every target scored over its own variance, then averaged: the large b does not swamp a
    zero = torch.zeros_like(y)
    sums = forecast_sums(lambda x: zero[None], u, y, 0, len(u), 0)
    mse_a, mse_b = (y[:, 0] ** 2).mean().item(), (y[:, 1] ** 2).mean().item()
    metrics = forecast_metrics(sums, "val")
    assert metrics["val_mse"] == pytest.approx((mse_a + mse_b) / 2, rel=1e-5)
    expected = np.mean([math.sqrt(m / y[:, k].double().var(unbiased=False).item())
                        for k, m in enumerate((mse_a, mse_b))])
    assert metrics["val_nrmse"] == pytest.approx(expected, rel=1e-5)


def test_a_npy_series_has_its_columns_named_by_index(tmp_path):
    np.save(tmp_path / "s.npy", np.sin(np.arange(300) / 7).astype(np.float32))
    dataset = DATASETS["series"]
    splits, info = dataset.load(dataset.options(path=str(tmp_path / "s.npy"), mode="generative",
                                                warmup=20, horizon=10))
    assert info.input_shape == (1,) and info.free_run == 10
    u, y = splits["train"]
    assert torch.equal(y[:-1], u[1:])  # one step ahead, then run on its own output


BAD_SERIES = {
    "a missing column": ("time,a\n0,1\n", {"target": ["b"]}, "s.csv:1: no column 'b' (its "
                         "columns: time, a)"),
    "a word": ("time,a\n0,1\n1,x\n", {"target": ["a"]}, "s.csv:3: column 'a': 'x' is not a "
               "number"),
    "a gap": ("time,a\n0,1\n1,\n", {"target": ["a"]}, "s.csv:3: column 'a': '' is not a number"),
    "not finite": ("time,a\n0,1\n1,nan\n", {"target": ["a"]}, "s.csv:3: column 'a': nan is "
                   "not finite"),
    "out of order": ("time,a\n0,1\n2,1\n1,1\n", {"target": ["a"], "time": "time"},
                     "s.csv:4: column 'time': '1' is not after the line before"),
    "too short": ("a\n" + "1\n" * 30, {}, "30 steps are too few"),
}


@pytest.mark.parametrize("case", BAD_SERIES)
def test_a_bad_series_is_one_line_naming_file_line_and_column(case, tmp_path):
    text, options, message = BAD_SERIES[case]
    (tmp_path / "s.csv").write_text(text)
    dataset = DATASETS["series"]
    with pytest.raises(DataError) as info:
        dataset.load(dataset.options(path=str(tmp_path / "s.csv"), **options))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_sequence_set_is_padded_with_nan_after_each_sequences_steps(tmp_path):
    dataset = DATASETS["sequences"]
    splits, info = dataset.load(dataset.options(
        path=str(write_sequences(tmp_path / "s.npz", test=True))))
    assert info.input_shape == (3,) and info.num_outputs == 3
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == [120, 30, 50]
    with np.load(tmp_path / "s.npz") as f:
        lengths = f["lengths_test"]
    x_test = splits["test"][0]
    for i in range(len(x_test)):
        assert torch.isfinite(x_test[i, :lengths[i]]).all()
        assert torch.isnan(x_test[i, lengths[i]:]).all()  # no junk left to read


@pytest.mark.parametrize("model, hyper", [
    ("lstm", {"hidden_size": 8}), ("gru", {"hidden_size": 8, "bidirectional": True}),
    ("fcn", {"filters": 4}), ("esn", {"units": 30, "pooling": "last"}),
    ("esn", {"units": 30, "pooling": "mean"})])
def test_what_pads_a_sequence_changes_no_prediction(model, hyper):
    family = MODELS[model]
    net = family.build(family.hyperparams(**hyper),
                       DataInfo(input_shape=(3,), num_outputs=4)).eval()
    torch.manual_seed(0)
    steps = torch.randn(2, 7, 3)
    short = torch.cat([steps, torch.full((2, 3, 3), torch.nan)], dim=1)  # 7 steps of 10
    long = torch.cat([steps, torch.full((2, 20, 3), torch.nan)], dim=1)  # 7 steps of 27
    alone = net(steps)  # the same sequences, unpadded
    assert torch.allclose(net(short), alone, atol=1e-5)
    assert torch.allclose(net(long), alone, atol=1e-5)
    # a batch of sequences of different lengths: each as if it were alone
    mixed = torch.cat([steps, steps[:, :4].new_full((2, 3, 3), torch.nan)], dim=1)
    mixed[1, 4:] = torch.nan  # the second has 4 steps
    predicted = net(mixed)
    assert torch.allclose(predicted[0], alone[0], atol=1e-5)
    assert torch.allclose(predicted[1], net(steps[1:, :4])[0], atol=1e-5)


BAD_SEQUENCES = {
    "no y": (lambda a: a.pop("y"), "no array 'y' beside x"),
    "shapes disagree": (lambda a: a.update(y=a["y"][:-1]), "x has 150 sequences and y 149"),
    "a length too long": (lambda a: a["lengths"].__setitem__(3, 30),
                          "lengths[3] = 30: a sequence has 1 to 24 valid steps"),
    "an empty sequence": (lambda a: a["lengths"].__setitem__(0, 0), "lengths[0] = 0"),
    "not finite": (lambda a: a["x"].__setitem__((2, 1, 0), np.inf), "x[2, 1, 0] is inf"),
    "one class": (lambda a: a.update(y=np.zeros_like(a["y"])), "y holds one class only"),
    "a class unseen in training": (
        lambda a: a.update(x_test=a["x"][:5], y_test=np.full(5, 7)),
        "y_test holds class 7, which y never does"),
}


@pytest.mark.parametrize("case", BAD_SEQUENCES)
def test_a_bad_sequence_set_is_one_line_naming_the_file_and_array(case, tmp_path):
    change, message = BAD_SEQUENCES[case]
    with np.load(write_sequences(tmp_path / "good.npz")) as f:
        arrays = dict(f)
    change(arrays)
    np.savez(tmp_path / "s.npz", **arrays)
    dataset = DATASETS["sequences"]
    with pytest.raises(DataError) as info:
        dataset.load(dataset.options(path=str(tmp_path / "s.npz")))
    assert str(tmp_path / "s.npz") in str(info.value) and message in str(info.value)


def test_a_table_is_one_hot_and_standardized_by_its_model(tmp_path):
    dataset = DATASETS["table"]
    options = dataset.options(path=str(write_table(tmp_path / "t.csv")), target="kind",
                              inputs=["size", "weight", "colour"], categorical=["colour"])
    splits, info = dataset.load(options)
    assert info.task == "classification" and info.classes == ("large", "small")
    assert info.input_shape == (5,)  # size, weight, then colour one-hot: blue, green, red
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == [192, 48, 60]
    x, _ = splits["train"]
    assert torch.equal(x[:, 2:].sum(1), torch.ones(len(x)))
    # the model standardizes by the training split, so it reads the file's numbers as they are
    net = MODELS["mlp"].build(MODELS["mlp"].hyperparams(units=8), info)
    again = raysearch.load(checkpoint.save(tmp_path / "m", "mlp", net))
    standardized = (x - again.mean) / again.std
    assert torch.allclose(standardized.mean(0), torch.zeros(5), atol=1e-4)
    assert torch.allclose(standardized.std(0, unbiased=False), torch.ones(5), atol=1e-4)


def test_a_numeric_target_is_regressed_and_scored_as_scikit_learn_scores_it(tmp_path):
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    from raysearch.metrics import regression_metrics, regression_sums

    dataset = DATASETS["table"]
    splits, info = dataset.load(dataset.options(path=str(write_table(tmp_path / "t.csv")),
                                                target="price", inputs=["size", "weight"]))
    assert info.task == "regression" and info.num_outputs == 1 and info.classes is None
    net = MODELS["mlp"].build(MODELS["mlp"].hyperparams(units=8), info).eval()
    x, y = splits["val"]
    with torch.no_grad():
        # untrained, it answers near the training split's mean price, in its units
        assert abs(net(x).mean().item() - info.target_scaling[0]) < info.target_scaling[1]
        predicted = net(x)[:, 0].double().numpy()
    metrics = regression_metrics(regression_sums(net, x, y), "val")
    truth = y[:, 0].double().numpy()
    assert metrics["val_rmse"] == pytest.approx(root_mean_squared_error(truth, predicted))
    assert metrics["val_mae"] == pytest.approx(mean_absolute_error(truth, predicted))
    assert metrics["val_r2"] == pytest.approx(r2_score(truth, predicted), rel=1e-5)


BAD_TABLES = {
    "a missing column": ("a,b\n1,2\n", {"target": "c"}, "t.csv:1: no column 'c' (its columns: "
                         "a, b)"),
    "a word": ("a,b\n1,2\n3,4\nx,5\n" + "1,2\n" * 20, {"target": "b"},
               "t.csv:4: column 'a': 'x' is not a number (name the column in "
               "data.categorical if it holds categories)"),
    "a gap": ("a,b\n1,2\n,3\n" + "1,2\n" * 20, {"target": "b"},
              "t.csv:3: column 'a' is empty (raysearch does not impute"),
    "not finite": ("a,b\n1,2\ninf,3\n" + "1,2\n" * 20, {"target": "b"},
                   "t.csv:3: column 'a': inf is not a finite 32-bit float"),
    "one class": ("a,b\n" + "1,x\n" * 20, {"target": "b"}, "column 'b' holds one class"),
    "a class unseen in training": ("a,b\n" + "1,x\n2,y\n" * 10 + "3,z\n", {"target": "b"},
                                   "class 'z' is in no row of the training split"),
    "a word to regress": ("a,b\n" + "1,2\n" * 20 + "1,x\n", {"target": "b", "task": "regression"},
                          "t.csv:22: column 'b': 'x' is not a number (a regression target"),
    "too few rows": ("a,b\n1,2\n2,3\n", {"target": "b"}, "2 rows are too few"),
    "a column twice": ("a,a,b\n1,2,3\n", {"target": "b"}, "t.csv:1: column 'a' appears twice"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_a_bad_table_is_one_line_naming_file_line_and_column(case, tmp_path):
    text, options, message = BAD_TABLES[case]
    (tmp_path / "t.csv").write_text(text)
    dataset = DATASETS["table"]
    with pytest.raises(DataError) as info:
        dataset.load(dataset.options(path=str(tmp_path / "t.csv"), **options))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_parquet_table_loads_as_its_csv_does(tmp_path):
    import pandas as pd

    csv = write_table(tmp_path / "t.csv")
    pd.read_csv(csv).to_parquet(tmp_path / "t.parquet")
    dataset = DATASETS["table"]
    loaded = [dataset.load(dataset.options(path=str(p), target="kind", categorical=["colour"]))
              for p in (csv, tmp_path / "t.parquet")]
    for split in ("train", "val", "test"):
        assert torch.allclose(loaded[0][0][split][0], loaded[1][0][split][0])
        assert torch.equal(loaded[0][0][split][1], loaded[1][0][split][1])


def test_a_sequence_set_may_name_its_classes(tmp_path):
    with np.load(write_sequences(tmp_path / "good.npz")) as f:
        arrays = dict(f)
    np.savez(tmp_path / "s.npz", **arrays, classes=np.array(["slow", "mid", "fast"]))
    dataset = DATASETS["sequences"]
    _, info = dataset.load(dataset.options(path=str(tmp_path / "s.npz")))
    assert info.classes == ("slow", "mid", "fast")
    np.savez(tmp_path / "s.npz", **arrays, classes=np.array(["slow", "mid"]))
    with pytest.raises(DataError, match="classes names 2 classes but y holds class id 2"):
        dataset.load(dataset.options(path=str(tmp_path / "s.npz")))


def as_folder(npz: Path, folder: Path) -> Path:
    """The arrays of an .npz as a folder of .npy files of the same names."""
    folder.mkdir()
    with np.load(npz) as f:
        for name in f.files:
            np.save(folder / f"{name}.npy", f[name])
    return folder


def rows(split) -> tuple[torch.Tensor, torch.Tensor]:
    return split.rows() if isinstance(split, MappedArrays) else split


@pytest.mark.parametrize("stream", [False, True])
def test_a_folder_of_npy_files_is_the_same_set_in_memory_or_memory_mapped(stream, tmp_path):
    npz = write_sequences(tmp_path / "s.npz", test=True)
    dataset = DATASETS["sequences"]
    in_memory, info = dataset.load(dataset.options(path=str(npz)))
    from_folder, again = dataset.load(dataset.options(
        path=str(as_folder(npz, tmp_path / "s")), stream=stream))
    assert again == info
    for split in ("train", "val", "test"):
        assert isinstance(from_folder[split], MappedArrays) == stream
        (x, y), (x2, y2) = rows(in_memory[split]), rows(from_folder[split])
        assert torch.equal(y, y2) and torch.allclose(x, x2, equal_nan=True)


def test_a_table_folder_streams_the_rows_its_csv_would_give(tmp_path):
    dataset = DATASETS["table"]
    csv = write_table(tmp_path / "t.csv")
    splits, info = dataset.load(dataset.options(path=str(csv), target="price",
                                                inputs=["size", "weight"]))
    (tmp_path / "t").mkdir()
    x = np.concatenate([rows(splits[s])[0].numpy() for s in ("train", "val", "test")])
    y = np.concatenate([rows(splits[s])[1][:, 0].numpy() for s in ("train", "val", "test")])
    np.save(tmp_path / "t" / "x.npy", x)
    np.save(tmp_path / "t" / "y.npy", y)
    streamed, again = dataset.load(dataset.options(path=str(tmp_path / "t"), stream=True))
    assert again.task == "regression" and again.input_shape == (2,)
    for split in ("train", "val", "test"):
        xs, ys = streamed[split].rows()
        assert xs.shape[1] == 2 and ys.shape[1] == 1 and len(xs) == len(rows(splits[split])[0])


def test_an_esn_fits_a_streamed_set_as_it_fits_the_same_set_in_memory(tmp_path):
    from raysearch.fit import TrialContext
    from raysearch.fit.ridge import fit_ridge

    npz = write_sequences(tmp_path / "s.npz")
    dataset = DATASETS["sequences"]
    family = MODELS["esn"]
    hp = family.hyperparams(units=40, pooling="mean", seeds=2, washout=0)
    reported = {}
    for name, path, stream in (("memory", npz, False),
                               ("mapped", as_folder(npz, tmp_path / "s"), True)):
        splits, info = dataset.load(dataset.options(path=str(path), stream=stream))
        epochs = reported.setdefault(name, [])
        trial = TrialContext(0, 1, torch.device("cpu"), 3, "val_accuracy", "max", 0,
                             lambda metrics, model, state, epochs=epochs: epochs.append(
                                 {k: v for k, v in metrics.items() if k != "epoch_s"}) is not None)
        fit_ridge(family.build(hp, info), hp, splits, info, trial, None)
    assert len(reported["memory"]) == 3
    for a, b in zip(reported["memory"], reported["mapped"], strict=True):
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6) for k in a)


def test_a_bad_folder_is_one_line_naming_it(tmp_path):
    npz = write_sequences(tmp_path / "s.npz")
    folder = as_folder(npz, tmp_path / "s")
    x = np.load(folder / "x.npy")
    x[4, 0, 1] = np.nan  # a valid step (every sequence has 6 or more)
    np.save(folder / "x.npy", x)
    dataset = DATASETS["sequences"]
    with pytest.raises(DataError, match=r"x\[4, 0, 1\] is nan"):
        dataset.load(dataset.options(path=str(folder)))
    with pytest.raises(DataError, match="an .npz cannot be memory-mapped"):
        dataset.load(dataset.options(path=str(npz), stream=True))
