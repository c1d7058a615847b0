"""Tiny models for tests, each aimed at one edge case. Importable (tests/ is on sys.path)
so that a pickled instance can be unpickled with --trust-pickle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyMLP(nn.Module):
    """Two ReLU layers on 8 features: the smallest net with hidden layers h1, h2."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


class FunctionalNet(nn.Module):
    """Rectifiers called as functions inside forward(): F.relu, Tensor.relu, F.leaky_relu."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))  # h1: 4x6x6
        h = F.leaky_relu(h, 0.1)  # h2
        return self.fc(h.flatten(1)).relu()  # h3: 5


class GeluNet(nn.Module):
    """No rectifier at all: a GELU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class HangOnLoad(nn.Module):
    """Unpickling it (with --trust-pickle) never finishes: for worker time-outs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def __setstate__(self, state: dict) -> None:
        import time

        time.sleep(3600)


class CrashOnLoad(nn.Module):
    """Unpickling it (with --trust-pickle) kills the process: for worker crashes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def __setstate__(self, state: dict) -> None:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
