"""The batched PyTorch engine (``--engine torch``), CPU and CUDA.

Modules: :mod:`.engine` (:class:`TorchEngine`, :class:`TorchOptions`), :mod:`.network`
(the connectome on the device), :mod:`.runner` (one batch, block by block: the algorithm)
and :mod:`.triton_kernel` (the fused Triton kernel). Importing this package does not
import PyTorch (``import torch`` inside it is PyTorch, never this package).
"""

from .engine import TorchEngine, TorchOptions

__all__ = ["TorchEngine", "TorchOptions"]
