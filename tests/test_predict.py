"""`raysearch predict`: a registered model's predictions for a file of inputs, equal to what
raysearch.load's model gives; a file that does not fit is one line naming it and the shape the
model reads. A real SQLite MLflow store, no Ray needed."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cli, cli_here
from mlflow import MlflowClient
from PIL import Image

import raysearch
from raysearch import checkpoint, tracking
from raysearch.data.base import normalized, read_photo
from raysearch.models.cnn import CNN
from raysearch.models.rnn import Recurrent
from raysearch.predict import InputError, predict_file

IMAGES = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
SERIES = np.random.default_rng(1).random((1, 30, 2), dtype=np.float32)  # 30 steps, 2 features


# a model trained on 16-px photos (imagefolder), which reads image files as its data set did
PHOTOS = {"size": 16, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
PHOTO_EXAMPLE = np.random.default_rng(2).standard_normal((2, 3, 16, 16), dtype=np.float32)


def register(client: MlflowClient, name: str, family: str, model, task: str,
             example: np.ndarray, folder: Path, photos: dict | None = None) -> Path:
    saved = checkpoint.save(folder / name, family, model, task=task, photos=photos)
    experiment = client.create_experiment(name)
    run = client.create_run(experiment).info.run_id
    tracking.promote(client, name, run, str(saved), "m", "max", 1.0, {}, example)
    return saved


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, dict[str, Path]]:
    """One registry for the module: an image classifier and a forecaster."""
    folder = tmp_path_factory.mktemp("registry")
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    torch.manual_seed(0)
    cnn = register(client, "digits", "cnn", CNN(1, 10, channels=4), "classification",
                   IMAGES[:2], folder)
    torch.manual_seed(0)
    lstm = Recurrent("lstm", 2, 1, hidden_size=8, per_step=True)
    lstm = register(client, "sensor", "lstm", lstm, "forecasting", SERIES[:, :10], folder)
    torch.manual_seed(0)
    photos = register(client, "photos", "cnn", CNN(3, 3, channels=4), "classification",
                      PHOTO_EXAMPLE, folder, photos=PHOTOS)
    # as `raysearch predict` has them
    pulled = {f"{name} pulled": tracking.pull(client, name, folder / f"pulled-{name}")[0]
              for name in ("digits", "sensor")}
    return tracking_uri, {"digits": cnn, "sensor": lstm, "photos": photos, **pulled}


@pytest.fixture
def registered(store):
    return store[1]


@pytest.fixture
def tracking_uri(store):
    return store[0]


def predict(tracking_uri: str, *args: str):
    return cli_here("predict", *args, "--tracking-uri", tracking_uri)


def test_images_from_npy_and_csv_give_the_class_probabilities_raysearch_load_does(
        registered, tmp_path, tracking_uri, capsys):
    expected = raysearch.load(registered["digits"])(torch.as_tensor(IMAGES)).softmax(-1)
    expected = expected.detach().numpy()
    np.save(tmp_path / "x.npy", IMAGES)
    done = predict(tracking_uri, "digits@champion", "--input", str(tmp_path / "x.npy"),
                   "--out", str(tmp_path / "p.npy"))
    assert done.returncode == 0, done.stderr
    assert np.allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6)

    # a CSV of flattened images, one per row, with a header; predictions as CSV on stdout
    header = ",".join(f"px{i}" for i in range(64))
    np.savetxt(tmp_path / "x.csv", IMAGES.reshape(5, 64), delimiter=",", header=header,
               comments="")
    predict_file(registered["digits pulled"], tmp_path / "x.csv", None)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split(",")[:2] == ["label", "p0"] and len(lines) == 6
    table = np.loadtxt(lines[1:], delimiter=",")
    assert (table[:, 0] == expected.argmax(1)).all()
    assert np.allclose(table[:, 1:], expected, atol=1e-5)


def test_a_series_of_any_length_from_npz_and_csv_gives_a_forecast_per_step(
        registered, tmp_path, tracking_uri):
    expected = raysearch.load(registered["sensor"])(torch.as_tensor(SERIES)).detach().numpy()
    np.savez(tmp_path / "x.npz", x=SERIES)  # 30 steps; the input example had 10
    done = predict(tracking_uri, "sensor", "--input", str(tmp_path / "x.npz"), "--out",
                   str(tmp_path / "p.csv"))
    assert done.returncode == 0, done.stderr
    table = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert table.shape == (30, 3)  # sequence, step, y0
    assert (table[:, 1] == np.arange(30)).all()
    assert np.allclose(table[:, 2], expected[0, :, 0], atol=1e-5)

    # one sequence as CSV: a row per step, a column per feature
    np.savetxt(tmp_path / "x.csv", SERIES[0], delimiter=",")
    predict_file(registered["sensor pulled"], tmp_path / "x.csv", tmp_path / "p.npy")
    assert np.allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6)


def photo_folder(root: Path) -> Path:
    noise = np.random.default_rng(3)
    for name, size in (("a.png", (20, 24)), ("more/b.jpg", (16, 16)), ("c.png", (40, 30))):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = noise.integers(0, 255, (*size, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(root / name)
    (root / "notes.txt").write_text("not an image, not read")
    return root


def test_a_folder_of_photos_is_read_as_the_data_set_read_them(registered, tmp_path,
                                                               tracking_uri):
    folder = photo_folder(tmp_path / "photos")
    done = predict(tracking_uri, "photos", "--input", str(folder), "--out",
                   str(tmp_path / "p.csv"))
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "file,label,p0,p1,p2"
    assert [line.split(",")[0] for line in lines[1:]] == ["a.png", "c.png", "more/b.jpg"]
    images = torch.stack([read_photo(folder / name, 16)
                          for name in ("a.png", "c.png", "more/b.jpg")])
    x = normalized(images, torch.tensor(PHOTOS["mean"]), torch.tensor(PHOTOS["std"]))
    expected = raysearch.load(registered["photos"])(x).softmax(-1).detach().numpy()
    got = np.array([[float(v) for v in line.split(",")[2:]] for line in lines[1:]])
    assert np.allclose(got, expected, atol=1e-5)


def test_an_image_that_does_not_read_is_named(registered, tmp_path):
    folder = photo_folder(tmp_path / "photos")
    (folder / "more" / "b.jpg").write_bytes(b"\xff\xd8 half a jpeg")
    with pytest.raises(InputError) as info:
        predict_file(registered["photos"], folder, None)
    assert str(info.value).startswith(f"{folder / 'more' / 'b.jpg'}: not a readable image")


def test_a_folder_is_refused_for_a_model_not_trained_on_photos(registered, tmp_path):
    folder = photo_folder(tmp_path / "photos")
    with pytest.raises(InputError) as info:
        predict_file(registered["digits pulled"], folder, None)
    assert str(info.value) == (f"{folder}: a folder of images is read only by a model trained "
                               "on photos (imagefolder, cifar10); this one is not (it reads "
                               "(N, 1, 8, 8))")


BAD = {
    "wrong-shape.npy": (lambda p: np.save(p, np.zeros((3, 1, 9, 9), np.float32)),
                        "inputs of shape (3, 1, 9, 9); the model reads (N, 1, 8, 8)"),
    "wrong-width.csv": (lambda p: p.write_text("1,2,3\n4,5,6\n"),
                        "inputs of shape (2, 3); the model reads (N, 1, 8, 8)"),
    "words.csv": (lambda p: p.write_text("a,b\nc,d\n"), "not a table of numbers"),
    "two-arrays.npz": (lambda p: np.savez(p, a=IMAGES, b=IMAGES), "name the inputs `x`"),
    "truncated.npy": (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00"), "unreadable"),
    "missing.npy": (lambda p: None, "unreadable"),
    "inputs.txt": (lambda p: p.write_text("1 2 3"), "not a .npy, .npz, .csv file"),
}


@pytest.mark.parametrize("name", BAD)
def test_an_input_that_does_not_fit_is_named_with_the_shape_the_model_reads(
        registered, tmp_path, name):
    make, message = BAD[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError) as info:
        predict_file(registered["digits pulled"], path, tmp_path / "p.csv")
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "p.csv").exists()


def test_an_out_file_in_a_missing_folder_is_named(registered, tmp_path):
    np.save(tmp_path / "x.npy", IMAGES)
    out = tmp_path / "nowhere" / "p.csv"
    with pytest.raises(InputError) as info:
        predict_file(registered["digits pulled"], tmp_path / "x.npy", out)
    assert str(info.value) == f"{out}: no folder {out.parent} to write it in"


def test_the_command_says_what_does_not_fit_in_one_line_and_exits_2(tmp_path, tracking_uri):
    path = tmp_path / "wrong-shape.npy"
    BAD[path.name][0](path)
    # a real process: what a user sees of it is one line, no traceback
    done = cli("predict", "digits", "--input", str(path), "--out", str(tmp_path / "p.csv"),
               "--tracking-uri", tracking_uri)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line == f"error: {path}: {BAD[path.name][1]}"
    assert not (tmp_path / "p.csv").exists()


def test_an_unknown_model_is_named(registered, tmp_path, tracking_uri):
    np.save(tmp_path / "x.npy", IMAGES)
    done = predict(tracking_uri, "nope@champion", "--input", str(tmp_path / "x.npy"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: nope@champion: ")
