"""Layers whose weights are the largest of a search space and run any smaller slice.

Output channels take the first ``k`` entries; kernels take the centre ``k x k`` of the
largest kernel. Input channels either take the first entries (as many as the input has)
or, given ``in_index``, the weight entries of those channel ids, in input order (see
:class:`~nas.models.Supernet`: channels that travel through splits and shuffles are
matched to weights by identity, not by position).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def crop_kernel(weight: Tensor, kernel_size: int) -> Tensor:
    """Centre ``kernel_size x kernel_size`` of a conv weight ``(out, in, K, K)``."""
    full = weight.shape[-1]
    if kernel_size == full:
        return weight
    start = (full - kernel_size) // 2
    return weight[:, :, start : start + kernel_size, start : start + kernel_size]


class DynamicConv2d(nn.Conv2d):
    """``nn.Conv2d`` of the largest shape; ``forward(x, out_channels, kernel_size)``."""

    def forward(
        self,
        x: Tensor,
        out_channels: int | None = None,
        kernel_size: int | None = None,
        in_index: Tensor | None = None,
    ) -> Tensor:
        """``in_index``: the weight entry of each input channel (default: the first ones)."""
        in_channels = x.shape[1]
        kernel_size = kernel_size or self.kernel_size[0]
        if self.groups == 1:
            weight = self.weight[: out_channels or self.out_channels]
            weight = (
                weight[:, :in_channels] if in_index is None else weight.index_select(1, in_index)
            )
            groups = 1
        else:  # depthwise: one filter per input channel
            weight = (
                self.weight[:in_channels]
                if in_index is None
                else self.weight.index_select(0, in_index)
            )
            groups = in_channels
        weight = crop_kernel(weight, kernel_size)
        return F.conv2d(x, weight, None, self.stride, kernel_size // 2, 1, groups)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` of the largest width, normalising the first ``C`` channels.

    Affine parameters and running statistics are shared slices. In training mode the batch
    statistics are used and the shared running statistics are updated in place, so they end
    up a blend over all trained sub-nets: evaluate a sub-net only after re-estimating its
    statistics (:func:`nas.train.recalibrate_bn` on the extracted model).
    """

    def forward(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """``index``: the entry of each input channel (default: the first ones)."""
        if index is not None:
            return self._indexed(x, index)
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        momentum = self.momentum
        if self.training and self.track_running_stats:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            None if self.running_mean is None else self.running_mean[:c],
            None if self.running_var is None else self.running_var[:c],
            None if self.weight is None else self.weight[:c],
            None if self.bias is None else self.bias[:c],
            use_batch_stats,
            momentum if momentum is not None else 0.0,
            self.eps,
        )

    def _indexed(self, x: Tensor, index: Tensor) -> Tensor:
        """Batch norm with the entries ``index``: the running statistics are gathered,
        updated by ``F.batch_norm`` in training mode and written back to those entries."""
        assert self.running_mean is not None and self.running_var is not None
        assert self.weight is not None and self.bias is not None
        mean, var = self.running_mean[index], self.running_var[index]
        momentum = self.momentum
        if self.training:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        out = F.batch_norm(
            x,
            mean,
            var,
            self.weight[index],
            self.bias[index],
            self.training,
            momentum if momentum is not None else 0.0,
            self.eps,
        )
        if self.training:
            with torch.no_grad():
                self.running_mean[index] = mean
                self.running_var[index] = var
        return out


class DynamicLinear(nn.Linear):
    """``nn.Linear`` over the first ``in`` features of the largest input."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)
