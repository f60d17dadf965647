"""Convolution geometry: the padding a strided convolution needs so that it neither drops input
pixels nor changes the output size silently.

For an input side ``H`` divisible by the stride ``s``, ``Conv2d(kernel=k, stride=s, padding=p)``
gives ``floor((H + 2p - k) / s) + 1`` outputs; that is ``H / s`` exactly when ``k - s <= 2p < k``,
and every input pixel is read when moreover ``k >= s``. :func:`conv_padding` returns the smallest
such ``p`` (``k // 2`` for stride 1 and an odd kernel, 0 for ``k == s`` patches, 1 for the usual
3x3 stride 2); a combination with no such ``p`` (an even kernel at stride 1, a kernel smaller than
its stride) is a ``ValueError`` unless the padding is given explicitly.
"""
from __future__ import annotations

from typing import Optional

__all__ = ["conv_padding"]


def conv_padding(kernel: int, stride: int, padding: Optional[int] = None, what: str = "conv") -> int:
    """The padding of a ``kernel`` x ``kernel`` convolution with ``stride``: ``padding`` when given
    (any integer >= 0 is accepted: the writer said so), else the one that keeps
    ``H_out = H / stride`` and reads every pixel. ValueError when no such padding exists."""
    for name, v, lo in (("kernel", kernel, 1), ("stride", stride, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{what} {name} must be a positive integer, got {v!r}")
    if padding is not None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"{what} padding must be an integer >= 0, got {padding!r}")
        return padding
    p = max(0, -(-(kernel - stride) // 2))  # ceil((k - s) / 2)
    if kernel < stride:
        raise ValueError(f"{what} kernel {kernel} with stride {stride} skips input pixels (the kernel is "
                         f"smaller than the stride); write padding: 0 to accept that")
    if 2 * p >= kernel:
        raise ValueError(f"{what} kernel {kernel} with stride {stride} cannot keep the grid at 1/{stride} "
                         f"of the input with symmetric padding (an even kernel at stride 1 changes the size by "
                         f"one); write padding: N to choose the size change")
    return p
