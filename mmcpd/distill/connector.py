"""Connectors: map student features to the teacher's width.

A connector is needed when a distilled feature has fewer channels in the
student than in the teacher: a pruned student, or a larger teacher of the
same family. It trains with the student and is not part of the deployed
model.
"""
from typing import Optional, Sequence

import torch
from torch import nn


def channel_dim(ndim: int) -> int:
    """The channel dimension of a feature with ``ndim`` dimensions.

    (N, C) and (N, C, H, W) carry channels in dimension 1; token features
    (N, L, C), as transformers produce them, in the last.

    Raises:
        ValueError: If ``ndim`` is not 2, 3 or 4.
    """
    if ndim not in (2, 3, 4):
        raise ValueError('features to distil should have 2, 3 or 4 '
                         f'dimensions, but got {ndim}')
    return -1 if ndim == 3 else 1


class Connector(nn.Module):
    """A learned linear map from student to teacher channels.

    A 1x1 convolution for (N, C, H, W) maps, a linear layer for (N, L, C)
    tokens and (N, C) vectors, as in FitNets (Romero et al., ICLR 2015).

    Args:
        in_channels (int): Student channels.
        out_channels (int): Teacher channels.
        ndim (int): Dimensions of the features, 2, 3 or 4.
    """

    def __init__(self, in_channels: int, out_channels: int, ndim: int) -> None:
        super().__init__()
        self.ndim = ndim
        self._dim = channel_dim(ndim)
        if ndim == 4:
            self.proj = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.proj = nn.Linear(in_channels, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.ndim or x.shape[self._dim] != self.in_channels:
            raise ValueError(
                f'this connector maps {self.ndim}-d features with '
                f'{self.in_channels} channels, but got shape '
                f'{tuple(x.shape)}; was the student pruned after the '
                'connector was built?')
        return self.proj(x)


def build_connector(student_shape: Sequence[int],
                    teacher_shape: Sequence[int]) -> Optional[Connector]:
    """A connector for two feature shapes, or None if widths agree.

    Args:
        student_shape (Sequence[int]): Shape of the student's feature.
        teacher_shape (Sequence[int]): Shape of the teacher's feature.

    Returns:
        Connector | None: None when the channel counts are equal.

    Raises:
        ValueError: If the shapes have different numbers of dimensions.
    """
    if len(student_shape) != len(teacher_shape):
        raise ValueError(
            'student and teacher features should have the same number of '
            f'dimensions, but got {tuple(student_shape)} and '
            f'{tuple(teacher_shape)}')
    dim = channel_dim(len(student_shape))
    c_s, c_t = student_shape[dim], teacher_shape[dim]
    if c_s == c_t:
        return None
    return Connector(c_s, c_t, len(student_shape))


class ChannelScatter(nn.Module):
    """Put a cut student feature's channels back at their places.

    When the student is pruned physically, a distilled feature loses the
    channels of the removed units; a masked student would still have them,
    at zero. This places the kept channels at their indices of the unpruned
    width and zeros elsewhere, so the loss sees exactly what it sees with
    masks. It has no parameters.

    Args:
        index (Tensor): For each kept channel, its index in the unpruned
            feature.
        channels (int): Channels of the unpruned feature.
        ndim (int): Dimensions of the features, 2, 3 or 4.
    """

    def __init__(self, index: torch.Tensor, channels: int, ndim: int):
        super().__init__()
        self.ndim = ndim
        self._dim = channel_dim(ndim)
        self.channels = channels
        self.register_buffer('index', index.clone().long())

    @property
    def in_channels(self) -> int:
        return int(self.index.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.ndim or x.shape[self._dim] != self.in_channels:
            raise ValueError(
                f'this channel scatter maps {self.ndim}-d features with '
                f'{self.in_channels} channels, but got shape '
                f'{tuple(x.shape)}')
        dim = self._dim % x.dim()
        shape = list(x.shape)
        shape[dim] = self.channels
        return x.new_zeros(shape).index_copy(dim, self.index, x)

    def narrow(self, keep: torch.Tensor) -> None:
        """Keep only the ``keep`` channels of its input (a further cut)."""
        self.index = self.index[keep.to(self.index.device)]
