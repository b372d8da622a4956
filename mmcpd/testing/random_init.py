"""The randomised model that the checks run: built, then randomised within
the domain that the model's own initialisation gives its parameters.

:func:`~mmcpd.prune.surgery.verify.randomize_model` keeps a parameter
positive where it is positive everywhere, but a model as built has not run
its ``init_weights``: Sparse R-CNN's learned proposals ``(cx, cy, w, h)``
are ``nn.Embedding``'s ``N(0, 1)`` until ``init_weights`` sets them to 0.5
and 1, so that half the boxes have negative sides, which mmcv's RoIAlign
rejects, whatever the randomisation. :func:`random_model` runs the
model's ``init_weights`` on a copy (pretrained checkpoints left out) only
to learn which parameters it makes positive everywhere; those take their
initialised values, all others keep the values they were built with, so
that every other parameter's draws are what they were.
"""
import copy
import logging
import warnings

from torch import nn

from mmcpd.models.loading import build_model_from_cfg
from mmcpd.prune.surgery.verify import randomize_model

__all__ = ['MIN_POSITIVE_VALUES', 'positive_by_init', 'random_model']

#: Fewest values of a parameter that :func:`positive_by_init` takes from
#: init: a symmetric random init (a conv's default bias) of ``n`` values is
#: all positive by chance with probability ``2 ** -n`` (CornerNet's
#: two-channel offset biases: 1 in 4), of 32 values 2e-10.
MIN_POSITIVE_VALUES = 32


def _without_pretrained(init_cfg):
    """``init_cfg`` without its ``Pretrained`` entries (None if none
    remain): the checks have no checkpoints, and need none."""
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    kept = [c for c in cfgs
            if not (isinstance(c, dict) and c.get('type') == 'Pretrained')]
    if not kept:
        return None
    return kept if isinstance(init_cfg, list) else kept[0]


def positive_by_init(model: nn.Module) -> nn.Module:
    """Give each floating parameter (of at least
    :data:`MIN_POSITIVE_VALUES` values) that ``model.init_weights()`` makes
    positive everywhere, and not one constant, those initialised values (a
    size, a scale: :func:`random_model`); the rest of ``model`` is
    unchanged. A constant that init sets (a bias of 4, a scale of 1) is
    left out: the randomisation redraws it whatever its sign, and it says
    nothing of a domain. Without ``init_weights`` (a plain ``nn.Module``),
    or where it fails offline (a backbone that downloads its checkpoint
    itself: PVT, DetectoRS), nothing changes (warned).

    Args:
        model (nn.Module): Changed in place.

    Returns:
        nn.Module: ``model``.
    """
    if not callable(getattr(model, 'init_weights', None)):
        return model
    init = copy.deepcopy(model)
    for module in init.modules():
        if getattr(module, 'init_cfg', None) is not None:
            module.init_cfg = _without_pretrained(module.init_cfg)
        if isinstance(getattr(module, 'pretrained', None), str):
            module.pretrained = None  # DetectoRS' RFP loads it in init
    # not its report of every parameter's init (thousands of lines)
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        init.init_weights()
    except Exception as e:  # a download (PVT's and DetectoRS's own loads)
        warnings.warn(f'{type(model).__name__}.init_weights() failed '
                      f'offline ({type(e).__name__}: {e}); its parameters '
                      'keep the values they were built with')
        return model
    finally:
        logger.setLevel(level)
    initialised = dict(init.named_parameters())
    for name, param in model.named_parameters():
        value = initialised.get(name)
        if (value is None or not value.is_floating_point()
                or value.numel() < MIN_POSITIVE_VALUES
                or not bool((value > 0).all())
                or bool((value == value.flatten()[0]).all())):
            continue
        param.data.copy_(value.data)
    return model


def random_model(cfg, seed: int = 0) -> nn.Module:
    """The config's model as the checks run it: built
    (:func:`~mmcpd.models.loading.build_model_from_cfg`), its positive
    parameters taken from its own initialisation (:func:`positive_by_init`)
    and randomised (:func:`~mmcpd.prune.surgery.verify.randomize_model`)
    from ``seed``."""
    model = positive_by_init(build_model_from_cfg(cfg))
    return randomize_model(model, seed)
