"""One-shot pruning in Python: comb a model, prune it.

``mmcpd.comb_model(model, inputs)`` (:mod:`mmcpd.prune.verified_comb`) traces
the model, resolves its coupled groups and (by default) verifies each prunable
group by removing it for real; ``mmcpd.prune_model(model, inputs, ratio)``
removes a fraction of the units of every prunable group, or
``mmcpd.prune_model(model, inputs, target=0.5)`` half of the FLOPs, by a named
importance, and returns the pruned architecture's spec.
"""
from typing import Any, Callable, Optional, Sequence, Tuple, Union

from torch import nn

from mmengine.logging import print_log

from mmcpd.comb.result import CombResult
from mmcpd.deploy.meter import check_onnxruntime
from mmcpd.engine.latency import closed_loop_meter, latency_table_for
from mmcpd.prune.cost import ACT_WEIGHT
from mmcpd.prune.session import PruneSession
from mmcpd.prune.settings import PruneSettings
from mmcpd.prune.spec import PrunedSpec
from mmcpd.prune.verified_comb import comb_model
from mmcpd.prune.widths import ROUND_TO


def _check_ratio(ratio: float, name: str = 'ratio') -> None:
    if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ValueError(f'`{name}` should be in (0, 1), but got {ratio!r}')


def prune_model(model: nn.Module,
                example_inputs: Any,
                ratio: Optional[float] = None,
                *,
                target: Optional[float] = None,
                metric: str = 'flops',
                rank_by: Optional[str] = None,
                act_weight: float = ACT_WEIGHT,
                importance: str = 'magnitude',
                round_to: int = ROUND_TO,
                min_channels: int = 1,
                max_ratio: float = 0.9,
                forward_fn: Optional[Callable] = None,
                ignore: Sequence[str] = (),
                result: Optional[CombResult] = None,
                latency_table: Optional[dict] = None,
                closed_loop: Union[bool, dict] = True,
                log: Optional[dict] = None
                ) -> Tuple[PrunedSpec, CombResult]:
    """Prune a model in one shot, in place, by a data-free importance.

    Two ways to say how much:

    - ``ratio``: remove that fraction of the units of every prunable group
      (uniform widths);
    - ``target``: remove that fraction of the model's ``metric`` (FLOPs or
      params), units of all groups ranked together by importance per cost,
      under ``min_channels``/``max_ratio``/``round_to``: what one step of
      the :class:`~mmcpd.engine.hooks.CPDHook` does.

    Args:
        model (nn.Module): The model to prune.
        example_inputs: Input of the traced forward.
        ratio (float, optional): Fraction of each group's units to remove,
            in (0, 1).
        target (float, optional): Fraction of the ``metric`` to remove, in
            (0, 1). Give ``ratio`` or ``target``.
        metric (str): ``'flops'``, ``'params'``, ``'latency'`` (measured
            on this machine: a latency table, see ``latency_table``;
            ``target=0.5`` is half the latency) or ``'latency_proxy'`` (the
            FLOPs plus ``act_weight`` MACs per activation element each
            channel writes; see :class:`~mmcpd.prune.cost.CostModel`), for
            ``target``. Defaults to ``'flops'``.
        rank_by (str, optional): The cost that ranks the units with
            ``target`` (importance per cost saved), if not ``metric``:
            ``rank_by='latency_proxy'`` with ``metric='flops'`` removes that
            fraction of the FLOPs where memory-bound ops shrink too.
            Defaults to None.
        act_weight (float): MACs per written activation element in the
            ``'latency_proxy'`` cost. Defaults to ``ACT_WEIGHT`` (2048).
        importance (str): A data-free score from ``IMPORTANCES``
            (``'magnitude'`` or ``'random'``); gradient-based scores need
            training: use ``CPDHook``.
        round_to (int): Channel block of the width rule
            (:mod:`mmcpd.prune.widths`): groups keep a multiple of this
            many channels, grouped convolutions per group, so that no
            width falls off the vectorised kernels; 1 leaves widths free.
            Defaults to ``ROUND_TO`` (8).
        min_channels (int): With ``target``, channels a group keeps at
            least. Defaults to 1.
        max_ratio (float): With ``target``, the largest fraction of a
            group's channels to remove. Defaults to 0.9.
        forward_fn (callable, optional): See :func:`comb`.
        ignore (list[str]): Module name patterns never to prune.
        result (CombResult, optional): A comb result of this model, to skip
            combing.
        latency_table (dict, optional): For ``'latency'``: the model's
            table, or the keyword arguments of
            :func:`~mmcpd.deploy.latency_table.latency_table` (e.g.
            ``dict(threads=2)``) to measure it, or load it from the cache,
            on ``example_inputs``. Defaults to None (measured with its
            defaults).
        closed_loop (bool | dict): With ``metric='latency'``, meet the
            target on the *measured* latency of the pruned model: select,
            export, time it interleaved with the unpruned one in
            onnxruntime (median), re-target the table's prediction from
            the same scores and repeat (:class:`~mmcpd.prune.closed_loop.
            LatencyLoop`). True: the defaults (``tol=0.03`` of the
            speedup, ``rounds=4``, ``runs=50``, the table's threads); a
            dict sets ``tol``, ``rounds``, ``calibrate`` (fractions of
            every group to remove uniformly, measured first to fit the
            table: ``LatencyCost.calibrate``), ``runs``, ``warmup``,
            ``threads``, ``provider`` or ``measure`` (a callable, model ->
            latency over the unpruned model's, instead of onnxruntime);
            False: stop at the predicted latency. Defaults to True.
        log (dict, optional): Filled with the closed loop's log (rounds,
            measured ratio, error, seconds). Defaults to None.

    Returns:
        tuple: The :class:`PrunedSpec` of the pruned model and the comb
        result it was pruned by.

    Examples:
        >>> x = torch.randn(1, 3, 224, 224)
        >>> spec, result = mmcpd.prune_model(model, x, ratio=0.3)
        >>> spec, result = mmcpd.prune_model(model, x, target=0.5, round_to=8)
        >>> spec, result = mmcpd.prune_model(model, x, target=0.5, round_to=8,
        ...                            rank_by='latency_proxy')
        >>> spec, result = mmcpd.prune_model(model, x, target=0.5, round_to=8,
        ...                            metric='latency')  # half the latency
        >>> spec.save('pruned.json')
    """
    if (ratio is None) == (target is None):
        raise ValueError('give one of `ratio` (per group) and `target` '
                         f'(of the {metric}), but got ratio={ratio!r} and '
                         f'target={target!r}')
    if ratio is not None:
        _check_ratio(ratio)
    else:
        _check_ratio(target, 'target')
    # checked before combing
    settings = PruneSettings(
        target if ratio is None else ratio,
        metric if ratio is None else 'params', 'physical', importance,
        min_channels, max_ratio, round_to, rank_by, act_weight,
        latency_table, closed_loop, ignore)
    loop = settings.loop
    if loop is not None and 'measure' not in loop[1]:
        check_onnxruntime('`closed_loop`')
    session = PruneSession(settings)
    if session.importance.uses_grad:
        raise ValueError(f'importance {importance!r} needs gradients from '
                         'training: use CPDHook, or `magnitude` here')
    if result is None:
        result = comb_model(
            model, example_inputs, forward_fn=forward_fn, ignore=ignore)
    session.start(model, result,
                  latency_table_for(settings, model, example_inputs,
                                    forward=forward_fn))
    if ratio is not None:
        done = session.prune_to(ratio, ratio=ratio)
    else:
        session.begin()
        session.measure = closed_loop_meter(session, example_inputs,
                                            forward=forward_fn)
        done = session.prune_to(target)
    if done.loop_log is not None:
        record = done.loop_log
        if log is not None:
            log.update(record)
        print_log(
            f"prune_model: measured latency {record['ratio']:.3f} of the "
            f"unpruned model ({1 / record['ratio']:.2f}x, target "
            f'{1 / (1 - target):.2f}x) after {len(record["rounds"])} '
            f"measurements in {record['seconds']:.1f} s", logger='current')
    session.apply(done.new)
    return session.spec(), result
