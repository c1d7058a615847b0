"""Write netprobe/assets/torchvision_classifiers.json: every torchvision classification model
name with its state dict's tensor count and total entries (buffers included).

netprobe recognises these names without importing torchvision (its import reaches
torch._dynamo, 1.5-2.8 s), and ``randomness NAME --weights-file W`` checks W against the
counts instead of building the network (docs/design.md, "Loading and safety"). Run it again
after a torchvision upgrade: ``python scripts/torchvision_table.py``. Architectures are built
on the meta device (no memory, no initialisation); regnet computes its widths with real
tensors, so it is built on the CPU.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torchvision
import torchvision.models as tvm

OUT = Path(__file__).resolve().parents[1] / "netprobe" / "assets" / "torchvision_classifiers.json"


def signature(name: str) -> list[int]:
    try:
        with torch.device("meta"):
            model = tvm.get_model(name, weights=None)
    except NotImplementedError:  # regnet: real tensors while building
        model = tvm.get_model(name, weights=None)
    sd = model.state_dict()
    return [len(sd), int(sum(v.numel() for v in sd.values()))]


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    table = {name: signature(name) for name in sorted(tvm.list_models(module=tvm))}
    about = "torchvision classification models: [state-dict tensors, entries]; written by "
    about += "scripts/torchvision_table.py"
    lines = [f"  {json.dumps(name)}: {json.dumps(sig)}" for name, sig in table.items()]
    OUT.write_text(
        "{\n"
        f' "about": {json.dumps(about)},\n'
        f' "torchvision": {json.dumps(torchvision.__version__.split("+")[0])},\n'
        ' "models": {\n' + ",\n".join(lines) + "\n }\n}\n"
    )
    print(f"{len(table)} models -> {OUT}")


if __name__ == "__main__":
    main()
