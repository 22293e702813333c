"""
A pool of large flat CPU scratch buffers, reused across calls instead of freed.

PyTorch's CPU allocator returns every allocation above glibc's mmap threshold (32 MiB at most) to
the kernel when it is freed, so the next one pays a page fault per 4 KiB on first touch: 18 ms for
the 75 MB taps matrix of one deformable conv at 256 channels, 64 x 64, batch 2 (a third of its
gather). The fused deformable conv takes its taps from here and gives them back after its backward
(or at once when no gradient is needed).
"""

import threading
from typing import List

import torch
from torch import Tensor

__all__ = ["ScratchPool"]


class ScratchPool:
    """Flat buffers by dtype; :meth:`take` returns the smallest free one that holds ``numel``
    values and wastes at most half of itself, else a new one. At most ``max_free_bytes`` are kept
    free: a buffer given back beyond that is freed as usual."""

    def __init__(self, max_free_bytes: int):
        self.max_free_bytes = max_free_bytes
        self._free: List[Tensor] = []
        self._lock = threading.Lock()

    def __reduce__(self):
        # A copy (deepcopy, pickle) is a new empty pool with the same cap: buffers and lock stay here.
        return (ScratchPool, (self.max_free_bytes,))

    @property
    def free_bytes(self) -> int:
        return sum(buffer.nbytes for buffer in self._free)

    def take(self, numel: int, dtype: torch.dtype) -> Tensor:
        """A (numel,) CPU tensor of ``dtype`` with arbitrary contents, owned by the caller until
        given back."""
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if b.dtype == dtype and numel <= b.numel() <= 2 * numel]
            if fits:
                buffer = self._free.pop(min(fits, key=lambda i: self._free[i].numel()))
                return buffer[:numel]
        return torch.empty(numel, dtype=dtype)

    def give(self, buffer: Tensor) -> None:
        """Return a tensor from :meth:`take` (or a view of it); the caller must not use it after."""
        base = buffer if buffer._base is None else buffer._base
        with self._lock:
            if self.free_bytes + base.nbytes <= self.max_free_bytes and not any(b is base for b in self._free):
                self._free.append(base)

    def clear(self) -> None:
        """Free every pooled buffer."""
        with self._lock:
            self._free.clear()
