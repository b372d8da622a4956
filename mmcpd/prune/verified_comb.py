"""The verified comb: trace a model's coupled groups (:mod:`mmcpd.comb`),
then check each by cutting it for real (:mod:`.surgery.verify`)."""
from typing import Any, Callable, Optional, Sequence

from torch import nn

from mmcpd.comb.pipeline import trace_groups
from mmcpd.comb.result import CombResult
from mmcpd.comb.trace import default_forward
from mmcpd.prune.surgery.verify import verify_groups


def comb_model(model: nn.Module,
               example_inputs: Any,
               *,
               forward_fn: Optional[Callable] = None,
               ignore: Sequence[str] = (),
               verify: bool = True) -> CombResult:
    """Coupled channel groups of ``model``, found by tracing it once.

    Args:
        model (nn.Module): Any model (OpenMMLab classifiers and segmentors
            run in tensor mode, segmentors with their auxiliary heads).
        example_inputs: Input of ``forward_fn``, e.g.
            ``torch.randn(1, 3, 224, 224)``.
        forward_fn (callable, optional): ``forward_fn(model, inputs)``
            returns the outputs whose shapes never change. Defaults to
            :func:`mmcpd.comb.default_forward`.
        ignore (list[str]): Module name patterns never to prune.
        verify (bool): Remove one unit of each group for real and freeze the
            groups whose pruned model differs from the masked one. Defaults
            to True.

    Returns:
        CombResult: groups (``.prunable``, ``.frozen``), printable and
        JSON-able.

    Examples:
        >>> import mmcpd
        >>> result = mmcpd.comb_model(model, torch.randn(1, 3, 224, 224))
        >>> print(result)
    """
    forward_fn = forward_fn or default_forward
    result = trace_groups(
        model, example_inputs, forward_fn=forward_fn, ignore=ignore)
    if verify:
        result = verify_groups(model, result, example_inputs, forward_fn)
    return result
