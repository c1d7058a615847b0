"""Architectures netprobe builds by name: its own small ReLU nets and torchvision's.

netprobe checkpoints record ``arch`` and ``arch_kwargs``; :func:`build` turns them back
into a module, so a checkpoint written by ``shadow-train`` is a runnable MODEL everywhere.
The bundled nets are plain conv/ReLU/max-pool stacks: the case the paper's theory is about
and that the reverse net handles exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import LoadError


class DigitNet(nn.Module):
    """LeNet-style net for 28x28 greyscale digits: conv-ReLU-pool x2, then two linear layers.

    Hidden layers: h1 = 32x28x28, h2 = 64x14x14, h3 = hidden width.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 128, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),  # -> 32x28x28
            nn.ReLU(),
            nn.MaxPool2d(2),  # -> 32x14x14
            nn.Conv2d(32, 64, 3, padding=1),  # -> 64x14x14
            nn.ReLU(),
            nn.MaxPool2d(2),  # -> 64x7x7
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # -> 3136
            nn.Linear(64 * 7 * 7, width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallVGG(nn.Module):
    """VGG-style net for 32x32 colour images: three conv blocks, then two linear layers."""

    def __init__(
        self, in_channels: int = 3, num_classes: int = 10, width: int = 256, dropout: float = 0.0
    ) -> None:
        super().__init__()
        chans = [in_channels, 32, 64, 128]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=False):
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),  # halves H and W
            ]
        self.features = nn.Sequential(*layers)  # -> 128x4x4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


BUNDLED: dict[str, type[nn.Module]] = {"digitnet": DigitNet, "smallvgg": SmallVGG}


#: torchvision's classification models, name -> (state-dict tensors, entries), as
#: scripts/torchvision_table.py wrote them for torchvision 0.29 (assets/torchvision_classifiers.json):
#: a name is recognised, and a --weights-file checked, without importing torchvision, whose
#: import pulls in torch._dynamo (1.5-2.8 s); a newer torchvision's extra names are still found
#: (:func:`is_torchvision_name`). tests/test_imports.py checks the table against torchvision.
TORCHVISION_STATE: dict[str, tuple[int, int]] = {
    k: (int(v[0]), int(v[1]))
    for k, v in json.loads(
        (Path(__file__).parent / "assets" / "torchvision_classifiers.json").read_text()
    )["models"].items()
}
TORCHVISION_CLASSIFIERS = frozenset(TORCHVISION_STATE)

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


def is_torchvision_name(name: str) -> bool:
    """Whether ``name`` is a torchvision classification model: the static list first, and
    torchvision itself (imported) only for a bare name the list lacks."""
    if name in TORCHVISION_CLASSIFIERS:
        return True
    return bool(_IDENT.match(name)) and name in torchvision_names()


def torchvision_names() -> list[str]:
    """Every classification model name torchvision lists."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def build(arch: str, **kwargs: Any) -> nn.Module:
    """Build an architecture by name: a bundled net, or ``torchvision:NAME`` / ``NAME``."""
    if arch in BUNDLED:
        return BUNDLED[arch](**kwargs)
    name = arch.removeprefix("torchvision:")
    if is_torchvision_name(name):
        import torchvision.models as tvm

        return tvm.get_model(name, weights=None, **kwargs)
    known = ", ".join(sorted(BUNDLED))
    raise LoadError(
        f"unknown architecture '{arch}'",
        hint=f"use one of netprobe's ({known}) or a torchvision classification name such as resnet18",
    )
