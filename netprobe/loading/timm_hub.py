"""``timm:NAME`` models (when timm is installed), pretrained weights through the Hugging
Face cache. docs/design.md ("Loading")."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LoadError
from ..seeds import seeded
from .files import load_state_dict_file
from .model import LoadedModel, _first_line, _offline, _suggest
from .statedict import _load_into


def _load_timm(
    name: str, weights: str, weights_file: Path | None, trust_pickle: bool, seed: int = 0
) -> LoadedModel:
    if _offline():  # read before huggingface_hub is imported
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import timm
    except ImportError:
        raise LoadError(
            f"timm:{name}: timm is not installed", hint="pip install 'netprobe[timm]'"
        ) from None
    if name not in timm.list_models():
        raise LoadError(
            f"timm:{name}: unknown timm model",
            hint=_suggest(
                name, timm.list_models(), "python -c 'import timm; print(timm.list_models())'"
            ),
        )
    pretrained = weights.lower() != "none" and weights_file is None
    try:
        with seeded(seed):  # the random init (--weights none) is a function of the seed
            model = timm.create_model(name, pretrained=pretrained)
    except Exception as e:  # Hugging Face hub failures have no common base class
        raise LoadError(
            f"timm:{name}: could not get pretrained weights ({_first_line(e)})",
            hint="fill the Hugging Face cache (HF_HOME) on a networked machine, or pass --weights none / --weights-file PATH",
        ) from e
    if weights_file is not None:
        _load_into(model, load_state_dict_file(weights_file, trust_pickle), str(weights_file), name)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    shape = tuple(int(v) for v in cfg.get("input_size", (3, 224, 224)))
    return LoadedModel(
        spec=f"timm:{name}",
        kind="timm",
        tensors=dict(model.state_dict()),
        module=model,
        arch=f"timm:{name}",
        input_shape=shape,
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        weights="pretrained"
        if pretrained
        else ("file" if weights_file else "random initialisation"),
    )
