"""``trace_groups(model, inputs)``: the coupled groups of any model, as the
tracer sees them (before verification; :func:`mmcpd.comb_model` verifies)."""
import time
import warnings
from typing import Any, Callable, Optional, Sequence

from mmengine.logging import MMLogger
from torch import nn

from mmcpd.comb.resolve import check_ignore, resolve
from mmcpd.comb.result import CombResult
from mmcpd.comb.sizes import size_warnings
from mmcpd.comb.trace import default_forward, trace


def trace_groups(model: nn.Module,
                 example_inputs: Any,
                 *,
                 forward_fn: Optional[Callable] = None,
                 ignore: Sequence[str] = ()) -> CombResult:
    """Trace ``model`` and resolve its coupled channel groups.

    This is the tracing half of :func:`mmcpd.comb_model`, which every mmcpd
    tool calls; it does not check the groups by pruning them, so a group
    whose widths Python code ties (``C // num_heads``) can be wrong here.

    The model runs once on ``example_inputs`` (in eval mode, without
    gradients); every op's effect on channels is resolved by the handler
    table, so no architecture needs code of its own. Ops without a handler
    freeze the groups they touch, with a warning that names them.

    Args:
        model (nn.Module): Any model; OpenMMLab classifiers and segmentors
            run in tensor mode, segmentors with their auxiliary heads.
        example_inputs: What ``forward_fn`` passes to the model, e.g.
            ``torch.randn(1, 3, 224, 224)``.
        forward_fn (callable, optional): ``forward_fn(model, inputs)``
            returns the outputs whose shape must never change. Defaults to
            :func:`mmcpd.comb.trace.default_forward`.
        ignore (list[str]): Module name patterns (fnmatch, or a prefix)
            whose channels are never pruned.

    Returns:
        CombResult: The groups (prunable and frozen), attribute updates,
        norms over channels and per-weight MACs.

    Raises:
        TraceError: The model cannot run on the inputs.
        ValueError: An ``ignore`` pattern matches no module.

    Examples:
        >>> result = trace_groups(model, torch.randn(1, 3, 224, 224))
        >>> print(result.prunable[0])
    """
    if isinstance(ignore, str):
        ignore = [ignore]
    check_ignore(model, ignore)
    start = time.perf_counter()
    graph, _ = trace(model, example_inputs, forward_fn or default_forward)
    logger = MMLogger.get_current_instance()
    if graph.dead:
        logger.debug('comb: no output needs ' + ', '.join(graph.dead) +
                     ' (they cost nothing)')
    result = size_warnings(resolve(graph, model, ignore),
                           graph.size_reasons)
    logger.debug(f'comb: {len(result.groups)} groups in '
                 f'{time.perf_counter() - start:.2f}s')
    for message in result.warnings:
        warnings.warn(f'mmcpd.comb: {message}', stacklevel=2)
    return result
