"""A file's format from its first bytes, never from its extension. docs/design.md ("Loading")."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path


def sniff(path: Path) -> str:
    """The file's format from its first bytes: zip-torch | torchscript | export |
    safetensors | onnx | legacy-torch | pickle, or ``unknown:<what it looks like>``."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "unknown:an empty file"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return "unknown:a truncated or corrupt zip archive"
        base = {n.split("/", 1)[-1] for n in names}
        if "archive_format" in base or any(n.endswith("models/model.json") for n in names):
            return "export"
        if "constants.pkl" in base and any("/code/" in n for n in names):
            return "torchscript"
        if "data.pkl" in base:
            return "zip-torch"
        return "unknown:a zip archive that is not a PyTorch file"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        # legacy torch.save starts with the pickled magic number 0x1950a86a20f9469cfc6c
        if head[2:14] == b"\x8a\x0a" + bytes.fromhex("6cfc9c46f9206aa85019"):
            return "legacy-torch"
        return "pickle"
    if (
        head[:1] == b"\x08"
        and len(head) > 3
        and head[1] < 0x20
        and head[2] in (0x12, 0x1A, 0x22, 0x3A, 0x42)
    ):
        return "onnx"
    for magic, what in (
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"%PDF", "a PDF document"),
        (b"\x93NUMPY", "a NumPy .npy array"),
        (b"\x89HDF", "an HDF5 file (Keras?)"),
    ):
        if head.startswith(magic):
            return f"unknown:{what}"
    try:
        head.decode("utf-8")
        return "unknown:a text file"
    except UnicodeDecodeError:
        return "unknown:unrecognised binary data"
