"""Choosing the compute device from a user's ``--device`` value."""

from __future__ import annotations

import re
from typing import Any

from lungai.errors import ResourceError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(spec: str = "auto") -> str:
    """Turn ``auto|cpu|cuda[:N]|mps`` into a device torch can use.

    Args:
        spec: the user's choice; ``auto`` takes CUDA, then Apple MPS, then the CPU.

    Returns:
        A torch device string such as ``cpu`` or ``cuda:0``.

    Raises:
        ValueError: ``spec`` is not a device name.
        ResourceError: the requested device is not available on this machine.
    """
    spec = spec.strip().lower()
    if not DEVICE_PATTERN.match(spec):
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    if spec == "cpu":
        return "cpu"
    import torch  # imported lazily: the lungs-only path needs no torch

    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if spec == "auto":
        return "cuda:0" if has_cuda else "mps" if has_mps else "cpu"
    if spec == "mps":
        if not has_mps:
            raise ResourceError("Apple MPS was requested but is not available here", "use --device cpu or auto")
        return "mps"
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if not has_cuda:
        raise ResourceError("a CUDA GPU was requested but none is available (or torch is a CPU build)",
                            "use --device cpu or auto")
    if index >= torch.cuda.device_count():
        raise ResourceError(f"CUDA device {index} requested but only {torch.cuda.device_count()} present",
                            "use --device cuda:0 or auto")
    return f"cuda:{index}"


def describe_devices() -> dict[str, Any]:
    """What compute this machine offers (for ``lungai info``)."""
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
                               "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    info["mps_available"] = mps is not None and bool(mps.is_available())
    info["default"] = resolve_device("auto")
    return info
