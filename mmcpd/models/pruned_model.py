"""``PrunedModel``: build a config's model at the widths of a pruned spec.

The model of a training config is the unpruned one; a deploy checkpoint
(``pruned_deploy.pth``) holds smaller tensors. mmcpd's own tools and the
:class:`~mmcpd.engine.cpd_runner.CPDRunner` resize the model to the
checkpoint's spec before loading it. For every other tool (MMPretrain's and
MMSeg's ``init_model``, their inferencers, a plain mmengine ``Runner``),
the :class:`~mmcpd.engine.cpd_runner.CPDRunner` writes a *deploy
config* next to the checkpoint whose ``model`` is::

    model = dict(type='mmcpd.models.PrunedModel',
                 model=dict(type='ImageClassifier', ...),   # as trained
                 pruned_spec=dict(shapes=..., attrs=...))

so that building it gives the small model, and the checkpoint loads as any
OpenMMLab checkpoint does.
"""
import copy

from mmengine.config import ConfigDict
from torch import nn

from mmcpd.prune.spec import PrunedSpec, apply_spec
from mmcpd.registry import MODELS


@MODELS.register_module(name='PrunedModel')
def build_pruned_model(model: dict, pruned_spec: dict, **kwargs) -> nn.Module:
    """Build ``model`` and resize it to ``pruned_spec``.

    Args:
        model (dict): The config of the unpruned model.
        pruned_spec (dict): A :class:`~mmcpd.prune.spec.PrunedSpec` as a
            dict (``PrunedSpec.to_dict()``).
        **kwargs: Set on ``model`` first: what the builders of OpenMMLab
            tools add to the model config, such as ``data_preprocessor``
            (MMPretrain's ``init_model``; None keeps the model's own),
            ``pretrained`` and ``train_cfg`` (MMSeg's).

    Returns:
        nn.Module: The model, at the pruned widths, with random weights.

    Raises:
        TypeError: ``model`` or ``pruned_spec`` is not a dict.
    """
    if not isinstance(model, dict):
        raise TypeError('`model` should be the config dict of the unpruned '
                        f'model, but got {type(model).__name__}')
    if not isinstance(pruned_spec, dict):
        raise TypeError('`pruned_spec` should be a dict (PrunedSpec.to_dict),'
                        f' but got {type(pruned_spec).__name__}')
    model = ConfigDict(copy.deepcopy(model))
    for key, value in kwargs.items():
        if key != 'data_preprocessor' or value is not None:
            model[key] = value
    built = MODELS.build(model)
    return apply_spec(built, PrunedSpec.from_dict(dict(pruned_spec)))
