"""Call an OpenMMLab model in tensor mode on a bare batch of images.

Classifiers and segmentors run ``model(inputs, mode='tensor')`` without
data samples. MMDetection's detectors do not: the RPN of a two-stage
detector clips its proposals to each sample's ``img_shape``, the DETR
family builds its padding masks from ``batch_input_shape`` and
``img_shape``, MaskFormer's head reads ``pad_shape``. As ``mmdet.apis`` and
mmdeploy do, the samples are made from the input's shape: every image fills
the whole batch, unpadded and unscaled.

This lives in the comb, the lowest layer that calls models (its
:func:`~mmcpd.comb.trace.default_forward` needs it, and so does
:class:`mmcpd.deploy.TensorModeAdapter` above it). Detectors are recognised
by the names of their classes, so that nothing here imports mmdet for
models that are not detectors; only for a detector, whose class already
imported mmdet, are its :class:`~mmdet.structures.DetDataSample` built.
"""
from typing import Any, List, Optional

import torch
from torch import nn

from mmcpd.comb.instance_masks import (fixed_positive_forward,
                                       masks_from_positives)
from mmcpd.comb.mmdet_kind import is_mmdet
from mmcpd.comb.query_selection import fixed_query_forward, selects_queries
from mmcpd.comb.two_stage import (learned_proposal_forward, learns_proposals,
                                  selects_proposals, two_stage_forward)

__all__ = ['is_mmdet_detector', 'image_metainfo', 'det_data_samples',
           'tensor_mode_samples', 'tensor_forward']


def is_mmdet_detector(model: Any) -> bool:
    """Whether ``model`` is an MMDetection ``BaseDetector`` (MMYOLO's and
    other subclasses included), found without importing mmdet."""
    return is_mmdet(model, 'BaseDetector')


def image_metainfo(inputs: torch.Tensor) -> List[dict]:
    """One metainfo dict per image of an ``(N, C, H, W)`` batch: each image
    is ``(H, W)``, unpadded, unscaled (what ``mmdet.apis`` gives an image
    that its pipeline neither resizes nor pads)."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        shape = getattr(inputs, 'shape', None)
        raise TypeError('a detector needs an (N, C, H, W) batch of images, '
                        f'but got {type(inputs).__name__} of shape {shape}')
    # plain ints: while tracing, ``shape`` may hold the comb's SymInts
    height, width = (int(s) for s in inputs.shape[-2:])
    hw = (height, width)
    return [
        dict(
            img_shape=hw,
            ori_shape=hw,
            pad_shape=hw,
            batch_input_shape=hw,
            scale_factor=(1.0, 1.0)) for _ in range(int(inputs.shape[0]))
    ]


def det_data_samples(inputs: torch.Tensor) -> list:
    """A ``DetDataSample`` per image of ``inputs``, with the metainfo of
    :func:`image_metainfo` and no annotations."""
    # Only called for mmdet detectors, so mmdet is imported already.
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=meta) for meta in image_metainfo(inputs)]


def _detector(model: nn.Module) -> nn.Module:
    """``model``, or the ``student`` a wrapper sends tensor mode to."""
    student = getattr(model, 'student', None)
    if isinstance(student, nn.Module) and not is_mmdet_detector(model):
        return student
    return model


def tensor_mode_samples(model: nn.Module,
                        inputs: torch.Tensor) -> Optional[list]:
    """The ``data_samples`` that ``model(inputs, data_samples,
    mode='tensor')`` needs: detectors' (also behind a wrapper that sends
    tensor mode to its ``student``, as ``DistillWrapper`` does), else None."""
    target = _detector(model)
    if is_mmdet_detector(target):
        return det_data_samples(inputs)
    return None


def tensor_forward(model: nn.Module, inputs: torch.Tensor) -> Any:
    """``model(inputs, mode='tensor')``, with the data samples a detector
    needs (:func:`tensor_mode_samples`): the raw outputs of its heads, as
    its ``_forward`` returns them. A two-stage detector whose RPN selects
    its proposals by NMS runs :func:`~mmcpd.comb.two_stage.
    two_stage_forward` instead (its RPN's raw outputs, and its RoI head on
    fixed proposals), Sparse R-CNN and QueryInst run every stage on their
    learned proposals without ground truth (:func:`~mmcpd.comb.two_stage.
    learned_proposal_forward`), YOLACT and CondInst run their mask heads on
    fixed positives (:func:`~mmcpd.comb.instance_masks.
    fixed_positive_forward`), and DINO or a two-stage Deformable DETR decodes
    fixed queries (:func:`~mmcpd.comb.query_selection.
    fixed_query_forward`): no round-off can make them jump."""
    samples = tensor_mode_samples(model, inputs)
    if samples is None:
        return model(inputs, mode='tensor')
    target = _detector(model)
    if selects_proposals(target):
        return two_stage_forward(target, inputs, samples)
    if learns_proposals(target):
        return learned_proposal_forward(target, inputs, samples)
    if masks_from_positives(target):
        return fixed_positive_forward(target, inputs, samples)
    if selects_queries(target):
        return fixed_query_forward(target, inputs, samples)
    return model(inputs, samples, mode='tensor')
