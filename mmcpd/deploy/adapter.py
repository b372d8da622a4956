"""Turn an OpenMMLab model into a tensor-in, tensors-out module for export.

MMPretrain classifiers and MMSeg segmentors take ``(inputs, data_samples,
mode)``; in ``mode='tensor'`` they return the raw network output:

* ``ImageClassifier``: the head's logits, ``(N, num_classes)``, before the
  softmax that ``predict`` applies;
* ``EncoderDecoder``: the decode head's logits, ``(N, num_classes, H/s,
  W/s)`` at the head's stride ``s``, before the bilinear resize to the image
  size that ``predict`` applies (``resize_to_input=True`` adds it);
* MMDetection detectors: their heads' raw outputs, before decoding and NMS
  (a single-stage detector's per-level scores and box deltas, a two-stage
  detector's RoI head outputs, DETR's per-layer scores and boxes). They
  need data samples in tensor mode too: they are made from the input's
  shape, one per image, unpadded and unscaled, as ``mmdet.apis`` and
  mmdeploy do (:func:`mmcpd.comb.tensor_mode.det_data_samples`).

A ``DistillWrapper`` sends ``tensor`` mode to its student, so it exports as
the student does. Plain ``nn.Module`` s without a ``mode`` argument are
called as ``model(inputs)``.

A model that none of these run as it should (a detector whose raw outputs
are wanted otherwise, a custom model) takes a forward override,
``forward(model, inputs)``, or its import path for text configs: the same
``forward`` that :class:`~mmcpd.engine.hooks.CPDHook` combs with.
"""
import inspect
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mmcpd.comb.tensor_mode import tensor_forward
from mmcpd.utils.module import Forward, import_callable

__all__ = ['TensorModeAdapter']


def _takes_mode(model: nn.Module) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return 'mode' in params


class TensorModeAdapter(nn.Module):
    """Call ``model(inputs, mode='tensor')`` (with data samples made from
    the input's shape for a detector) and return a tuple of tensors.

    Args:
        model (nn.Module): The model to wrap. It is put in eval mode.
        resize_to_input (bool): Resize 4-d outputs (segmentation logits)
            bilinearly to the input's height and width, as mmseg's
            ``predict`` does. Defaults to False.
        forward (str | callable, optional): ``forward(model, inputs)``
            returning the tensors (nested in lists and tuples) to export,
            or its import path (``'my_pkg.module.fn'``). Defaults to None:
            tensor mode as above.

    Examples:
        >>> adapter = TensorModeAdapter(classifier)
        >>> logits, = adapter(torch.rand(1, 3, 224, 224))
        >>> adapter = TensorModeAdapter(detector, forward='my_pkg.fwd.raw')
    """

    def __init__(self,
                 model: nn.Module,
                 resize_to_input: bool = False,
                 forward: Forward = None):
        super().__init__()
        self.model = model.eval()
        self.resize_to_input = resize_to_input
        self.forward_fn: Optional[Callable] = import_callable(
            forward, 'forward')
        self._takes_mode = _takes_mode(model)

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.forward_fn is not None:
            out = self.forward_fn(self.model, inputs)
        elif self._takes_mode:
            out = tensor_forward(self.model, inputs)
        else:
            out = self.model(inputs)
        outs = _flatten(out)
        if self.resize_to_input:
            outs = tuple(
                F.interpolate(
                    o,
                    size=inputs.shape[2:],
                    mode='bilinear',
                    align_corners=False) if o.dim() == 4 else o for o in outs)
        return outs


def _flatten(out) -> Tuple[torch.Tensor, ...]:
    """The tensors of ``out``, in order; a dict's (Grid R-CNN's RoI head
    returns one) in the order of its keys."""
    if isinstance(out, torch.Tensor):
        return (out, )
    if isinstance(out, dict):
        return _flatten(list(out.values()))
    if isinstance(out, (list, tuple)):
        flat = []
        for item in out:
            flat.extend(_flatten(item))
        return tuple(flat)
    raise TypeError('the forward should return tensors (in lists, tuples '
                    f'and dicts), but it returned a {type(out).__name__}; for '
                    'tensor mode, is it an mmpretrain/mmseg/mmdet model? '
                    'Else give a `forward` that returns its output tensors')
