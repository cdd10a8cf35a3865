"""Batches straight from uint8 tensors: augmentation, resizing and normalisation run on
whole batches as tensor ops, on the training device. No per-image PIL work per epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from nas.data._dataset import Split


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random ``pad``-pixel shifted crop (reflect padding) and horizontal flip, per image."""
    n, _, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class BatchLoader:
    """Iterate ``(images, labels)`` batches of a :class:`Split`.

    Images are converted to float, optionally augmented (random crop with ``pad`` pixels of
    reflect padding, horizontal flip), resized to ``resolution`` if it differs from the
    stored size, and normalised with ``mean`` / ``std``. Shuffling and augmentation draw
    from a CPU generator seeded per epoch, so an epoch is reproducible on any device and a
    resumed run can skip the batches it has already seen.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = False,
        augment: bool = False,
        resolution: int | None = None,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        seed: int = 0,
        pad: int = 4,
        channels_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.resolution = resolution
        self.seed, self.pad, self.channels_last = seed, pad, channels_last
        self.rank, self.world = shard
        c = self.images.shape[1]
        self.mean = torch.tensor(mean, device=self.device).view(1, c, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, c, 1, 1) * 255
        self.epoch = 0

    def _indices(self) -> torch.Tensor:
        n = self.labels.numel()
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world > 1:  # each rank a disjoint, equally long shard
            per_rank = n // self.world
            order = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        return order

    def __len__(self) -> int:
        n = self.labels.numel() // self.world if self.world > 1 else self.labels.numel()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the current epoch, beginning at batch ``start``."""
        order = self._indices()
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size].to(self.device)
            x = self.images[idx].float()
            if self.augment:
                # one generator per batch: a resumed epoch skips batches without replaying
                g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, b, self.rank))
                x = random_crop_flip(x, self.pad, g)
            yield self._finish(x), self.labels[idx]

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.resolution is not None and x.shape[-1] != self.resolution:
            x = F.interpolate(
                x,
                size=(self.resolution, self.resolution),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()


def mix_seed(*values: int) -> int:
    """Combine integers into one 63-bit seed (deterministic across runs and platforms)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0x7FFFFFFFFFFFFFFF
    return h
