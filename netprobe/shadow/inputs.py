"""What a SHADOW experiment trains on and from: data splits at the model's input shape, the
starting model of each seed (:class:`ModelSpec`), and the SHADOW layer, all checked at the door
(:func:`setup`)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import DatasetError, LoadError, OptionError
from .generate import ShadowSettings, synthesize

if TYPE_CHECKING:
    from ..data import Dataset
    from ..loading import LoadedModel


def head_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The classifier head: the last ``nn.Linear`` in module order."""
    found = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            found = (name, m)
    return found


@dataclass
class ExperimentData:
    """Unnormalised train / validation / test data at the model's input shape, and how they
    were made (``info`` goes into report.json)."""

    train: Dataset
    test: Dataset
    val: Dataset | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    info: dict[str, Any]

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        m = torch.tensor(self.mean, dtype=x.dtype).view(1, c, 1, 1)
        s = torch.tensor(self.std, dtype=x.dtype).view(1, c, 1, 1)
        return (x - m) / s


def _has_own_test_split(spec: str | None) -> bool:
    """True for sources that ship a test split (bundled digits, torchvision sets, an .npz with
    x_test, a folder with train/ and test/ or val/)."""
    if spec is None or spec == "":
        return True
    from ..data import ALIASES, TORCHVISION

    if ALIASES.get(spec.lower(), spec.lower()) in TORCHVISION:
        return True
    p = Path(spec).expanduser()
    if p.is_dir():
        names = {c.name.lower() for c in p.iterdir() if c.is_dir()}
        return "train" in names and bool(names & {"test", "val"})
    if p.suffix.lower() == ".npz" and p.is_file():
        import numpy as np

        try:
            with np.load(p, allow_pickle=False) as z:
                return "x_test" in z.files
        except Exception:  # load_dataset reports unreadable files properly
            return False
    return False


def _subset(ds: Dataset, n: int | None, seed: int, what: str) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    if n < 1:
        raise OptionError(f"--{what}-size {n}: must be at least 1", hint=f"e.g. --{what}-size 1000")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(ds), generator=g)[:n].sort().values
    return ds.subset(idx)


def load_splits(
    spec: str | None,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
) -> tuple[Dataset, Dataset, Dataset | None, dict[str, Any]]:
    """Raw (train, test, validation) splits of a source, with a record of how they were made.
    Sources without a test split are split with ``test_fraction`` (stratified, ``split_seed``);
    ``val_fraction`` of the training part is held out the same way; then seeded subsets."""
    from ..data import load_dataset, train_test_split

    if not 0.0 <= val_fraction < 1.0:
        raise OptionError(
            f"--val-fraction {val_fraction}: must lie in [0, 1)",
            hint="e.g. --val-fraction 0.1; 0 = none",
        )
    own = _has_own_test_split(spec)
    if own:
        train = load_dataset(spec, split="train", data_dir=data_dir, download=download)
        test = load_dataset(spec, split="test", data_dir=data_dir, download=download)
        how = "the source's own train/test split"
    else:
        whole = load_dataset(spec, split="all", data_dir=data_dir, download=download)
        train, test = train_test_split(whole, test_fraction, seed=split_seed)
        how = f"stratified split, test fraction {test_fraction:g}, seed {split_seed}"
    for ds, what in ((train, "training"), (test, "test")):
        if ds.y is None:
            raise DatasetError(
                f"{ds.source}: the {what} data has no labels",
                hint="give labelled data (an .npz with y, or one sub-folder per class)",
            )
    val = None
    if val_fraction > 0:
        train, val = train_test_split(train, val_fraction, seed=split_seed + 1)
    full = (len(train), len(test))
    train = _subset(train, train_size, split_seed + 2, "train")
    test = _subset(test, test_size, split_seed + 3, "test")
    info = {
        "source": train.source if own else test.source,
        "split": how,
        "split_seed": split_seed,
        "train": len(train),
        "test": len(test),
        "validation": len(val) if val is not None else 0,
        "val_fraction": val_fraction,
        "train_available": full[0],
        "test_available": full[1],
        "subset_seed": {"train": split_seed + 2, "test": split_seed + 3}
        if (train_size or test_size)
        else None,
        "raw_shape": list(train.shape),
    }
    return train, test, val, info


@dataclass
class ModelSpec:
    """How to build the starting model of a seed: the same for every arm of that seed."""

    arch: str
    arch_kwargs: dict[str, Any]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    resize: int | None
    source: str  # in words, for reports
    base: nn.Module | None = None  # a loaded model to fine-tune (--from)
    new_head: bool = False
    num_classes: int = 10
    provenance: dict[str, Any] = field(default_factory=dict)

    def build(self, seed: int) -> nn.Module:
        """The starting weights for ``seed``: a fresh initialisation drawn from the seed, or a copy
        of the loaded model (with a head drawn from the seed when ``new_head``)."""
        from ..seeds import build_initialised, seeded

        if self.base is None:
            return build_initialised(self.arch, seed, **self.arch_kwargs)
        model = copy.deepcopy(self.base)
        if self.new_head:
            name, lin = head_linear(model) or ("", None)  # checked in model_spec
            assert lin is not None
            with seeded(seed):
                new = nn.Linear(lin.in_features, self.num_classes, bias=lin.bias is not None)
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], new)
        return model


BUNDLED_SHAPES = {"digitnet": (1, 28, 28), "smallvgg": (3, 32, 32)}


def model_spec(
    raw_shape: Sequence[int],
    num_classes: int,
    *,
    arch: str | None = None,
    from_model: LoadedModel | None = None,
    new_head: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> ModelSpec:
    """Which model an experiment trains: ``from_model`` (fine-tuning), ``arch`` (a bundled name or
    any torchvision name, from scratch), or by default DigitNet for greyscale data (28x28) and
    SmallVGG for colour data (32x32)."""
    if from_model is not None:
        lm = from_model
        module = lm.require_module("shadow-train")
        if isinstance(module, torch.jit.ScriptModule) or lm.arch is None:
            raise LoadError(
                f"--from {lm.display}: netprobe can fine-tune only models whose architecture it can rebuild "
                f"(this is a {lm.kind.replace('_', ' ')} file)",
                hint="pass a netprobe checkpoint, a torchvision name, or a state dict with --arch NAME",
            )
        shape = input_shape or lm.input_shape or tuple(int(v) for v in raw_shape)
        head = head_linear(module)
        have = head[1].out_features if head is not None else None
        if new_head and head is None:
            raise OptionError(
                f"--new-head: {lm.display} has no Linear layer to replace",
                hint="fine-tune it without --new-head",
            )
        if not new_head and have is not None and have != num_classes:
            raise OptionError(
                f"--from {lm.display}: the model predicts {have} classes and the data has {num_classes}",
                hint="pass --new-head to replace its last Linear layer with a fresh one",
            )
        ckw: dict[str, Any] = (
            dict(lm.meta.get("arch_kwargs") or {}) if lm.kind == "checkpoint" else {}
        )
        if new_head:
            ckw["num_classes"] = num_classes
        return ModelSpec(
            lm.arch,
            ckw,
            tuple(shape),
            lm.mean,
            lm.std,
            lm.resize,
            f"fine-tuned from {lm.display}",
            base=module,
            new_head=new_head,
            num_classes=num_classes,
            provenance=lm.provenance(),
        )
    if new_head:
        raise OptionError(
            "--new-head goes with --from CHECKPOINT", hint="drop --new-head, or pass --from"
        )
    kwargs: dict[str, Any]
    c = int(raw_shape[0])
    name = (arch or ("digitnet" if c == 1 else "smallvgg")).removeprefix("torchvision:")
    if name in BUNDLED_SHAPES:
        shape = BUNDLED_SHAPES[name]
        if input_shape is not None and tuple(input_shape) != shape:
            raise OptionError(
                f"--input-shape {','.join(map(str, input_shape))}: {name} takes {','.join(map(str, shape))}",
                hint="drop --input-shape, or pick a torchvision --arch",
            )
        kwargs = {"num_classes": num_classes}
    else:
        from ..archs import torchvision_names

        if name not in torchvision_names():
            import difflib

            close = difflib.get_close_matches(name, [*BUNDLED_SHAPES, *torchvision_names()], n=2)
            raise OptionError(
                f"--arch {arch}: unknown architecture",
                hint=f"did you mean {', '.join(close)}?"
                if close
                else "use digitnet, smallvgg or a torchvision classification name",
            )
        h, w = (int(raw_shape[1]), int(raw_shape[2])) if len(raw_shape) == 3 else (32, 32)
        shape = tuple(input_shape) if input_shape is not None else (3, max(h, 32), max(w, 32))
        kwargs = {"num_classes": num_classes}
    return ModelSpec(
        name,
        kwargs,
        tuple(shape),
        None,
        None,
        None,
        f"{name}, trained from scratch",
        num_classes=num_classes,
    )


def prepare_data(
    train: Dataset, test: Dataset, val: Dataset | None, spec: ModelSpec, info: Mapping[str, Any]
) -> ExperimentData:
    """The splits at the model's input shape (unnormalised, [0, 1]), and the per-channel mean/std:
    the loaded model's when it records them, else the training data's own."""
    from ..data import Dataset as _Dataset
    from ..data import prepare

    def at_shape(ds: Dataset) -> Dataset:
        x = prepare(ds, spec.input_shape, resize=spec.resize)  # (N, *input_shape), unnormalised
        return _Dataset(x=x, y=ds.y, classes=ds.classes, source=ds.source)

    if len(spec.input_shape) != 3:
        raise OptionError(
            f"input shape {spec.input_shape}: shadow-train trains image models (C,H,W)",
            hint="pass --input-shape C,H,W",
        )
    tr, te = at_shape(train), at_shape(test)
    va = at_shape(val) if val is not None else None
    if spec.mean is not None and spec.std is not None:
        mean, std = tuple(float(v) for v in spec.mean), tuple(float(v) for v in spec.std)
        if len(mean) == 1 and spec.input_shape[0] > 1:
            mean, std = mean * spec.input_shape[0], std * spec.input_shape[0]
        where = "the model's"
    else:
        mean = tuple(float(v) for v in tr.x.mean((0, 2, 3)))
        std = tuple(max(float(v), 1e-6) for v in tr.x.std((0, 2, 3)))
        where = "the training data's"
    classes = list(train.classes or []) or [str(i) for i in range(spec.num_classes)]
    full = dict(info)
    full.update(
        {
            "input_shape": list(spec.input_shape),
            "mean": list(mean),
            "std": list(std),
            "normalisation": f"{where} per-channel mean/std",
            "classes": len(classes),
        }
    )
    return ExperimentData(tr, te, va, mean, std, classes, full)


def resolve_hidden_layer(
    model: nn.Module, input_shape: tuple[int, ...], layer: str
) -> tuple[int, str]:
    """``--layer`` (h2, a module path) -> (index, description), checked at the door."""
    from ..netlayers import hidden_layers, resolve_layer

    hl = resolve_layer(layer, hidden_layers(model, input_shape))
    return hl.index, f"{hl.name} ({hl.where}, {'x'.join(map(str, hl.shape))})"


@dataclass
class Setup:
    """Everything an experiment needs besides arms, seeds and training settings."""

    data: ExperimentData
    spec: ModelSpec
    settings: ShadowSettings  # with the resolved layer index
    layer_name: str


def setup(
    dataset: str | None,
    *,
    from_model: LoadedModel | None = None,
    arch: str | None = None,
    new_head: bool = False,
    input_shape: str | None = None,
    layer: str = "h2",
    settings: ShadowSettings | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    download: bool = False,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Setup:
    """Data splits, the starting model and the SHADOW layer, all checked at the door: a bad
    dataset, architecture or ``--layer``, or a model the reverse net cannot run backwards, fails
    here with a one-line error, before any training."""
    from ..loading import parse_input_shape

    train, test, val, info = load_splits(
        dataset,
        data_dir=data_dir,
        download=download,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        split_seed=split_seed,
        train_size=train_size,
        test_size=test_size,
    )
    assert train.y is not None and test.y is not None  # load_splits checks labels
    num_classes = max(len(train.classes or []), int(train.y.max()) + 1, int(test.y.max()) + 1)
    spec = model_spec(
        train.shape,
        num_classes,
        arch=None if from_model is not None else arch,
        from_model=from_model,
        new_head=new_head,
        input_shape=parse_input_shape(input_shape),
    )
    data = prepare_data(train, test, val, spec, info)
    probe = spec.build(seed)
    index, name = resolve_hidden_layer(probe, spec.input_shape, layer)
    chosen = dataclasses.replace(settings or ShadowSettings(), layer=index).check()
    synthesize(probe, data.normalised(data.test.x[:2]), chosen, 0)  # irreversible ops fail here
    return Setup(data, spec, chosen, name)
