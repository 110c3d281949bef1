"""What a model's weights depend on besides code, data and hyper-parameters: the interpreter and library versions, and
the hardware that trained it (recorded with each model version; `mlops reproduce` compares them)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

# Distributions whose versions can change the weights (numerics, decoding, validation) or how the run went.
LIBRARIES = ("torch", "numpy", "pillow", "great-expectations", "pandas", "dagster", "bentoml")


def library_versions() -> dict[str, str]:
    """{"python": "3.11.7", "torch": "2.13.0", ...}: the interpreter and each of LIBRARIES ("not installed" when
    absent), plus the platform and torch's CUDA build."""
    found = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}"}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    try:
        import torch  # already loaded where a model was trained; its CUDA build is part of what computed the weights
    except ImportError:
        return found
    found["torch.cuda"] = str(torch.version.cuda or "none")
    return found


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown model"


def hardware_description(device: str) -> str:
    """The hardware behind a torch device name, in words: `cpu: x86_64, <model>` or `cuda:0: <GPU name>`."""
    if device.startswith("cuda"):
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
            return f"{device}: {torch.cuda.get_device_name(index)}"
        return f"{device}: (GPU not visible to this process)"
    return f"{device}: {platform.machine()}, {_cpu_model()}"


def differences(recorded: dict[str, str] | None, current: dict[str, str]) -> list[str]:
    """`name recorded -> now` for every entry that differs (an empty list when `recorded` is None: nothing to
    compare)."""
    if not recorded:
        return []
    names = sorted(set(recorded) | set(current))
    return [
        f"{name} {recorded.get(name, 'absent')} -> {current.get(name, 'absent')}"
        for name in names
        if recorded.get(name) != current.get(name)
    ]
