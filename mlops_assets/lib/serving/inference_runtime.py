"""How a serving process runs forward passes: CPU thread count, no autograd, mixed precision on CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def configure_cpu_threads(threads: int) -> None:
    """Fix torch's intra-op threads: its default (all cores) oversubscribes a box shared with HTTP workers."""
    import torch

    if threads < 1:
        raise ValueError(f"torch_threads must be at least 1, got {threads}.")
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        # Settable only before the first parallel region runs; a second call in the same process is harmless.
        torch.set_num_interop_threads(1)


def uses_mixed_precision(device: str) -> bool:
    return device.startswith("cuda")


def inference_context(device: str) -> contextlib.AbstractContextManager:
    """torch.inference_mode everywhere; float16 autocast on CUDA, where tensor cores make it pay.

    On the CPU the context is torch's own object, not a generator-based one: it is entered on every forward pass,
    and for a small model at one image per request the generator's overhead is a measurable share of the pass.
    """
    import torch

    if uses_mixed_precision(device):
        return _mixed_precision_inference()
    return torch.inference_mode()


@contextlib.contextmanager
def _mixed_precision_inference() -> Iterator[None]:
    import torch

    with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.float16):
        yield
