"""What a prune session is asked to do, checked once: plain, validated data.

:class:`PruneSettings` holds the arguments that ``CPDHook`` and
``mmcpd.prune_model`` share (what to count, how much, the importance, the
per-group guards, the closed latency loop) and checks each where it is
given, with errors that name the field, before any model is traced.
"""
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

from mmcpd.prune.closed_loop import loop_settings
from mmcpd.prune.cost import ACT_WEIGHT, METRICS
from mmcpd.prune.importance import BaseImportance
from mmcpd.prune.selection import Guards
from mmcpd.prune.shrink import SHRINK_MODES
from mmcpd.prune.widths import MEASURED, ROUND_TO
from mmcpd.registry import IMPORTANCES, build_own


def check_int(name: str, value, low: int) -> None:
    """A ValueError naming ``name`` unless ``value`` is an int >= ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(
            f'`{name}` should be an int >= {low}, but got {value!r}')


def check_width_limit(name: str, value) -> None:
    """A ValueError naming ``name`` unless ``value`` is an int >= 1 or
    ``'measured'`` (decided per group from the latency table)."""
    if value != MEASURED:
        try:
            check_int(name, value, 1)
        except ValueError:
            raise ValueError(f'`{name}` should be an int >= 1 or '
                             f'{MEASURED!r}, but got {value!r}') from None


def check_pruner_args(metric: str, rank_by: Optional[str],
                      shrink: str) -> None:
    """ValueErrors naming a bad ``metric``, ``rank_by`` or ``shrink``."""
    if metric not in METRICS:
        raise ValueError(f'`metric` should be one of {METRICS}, but '
                         f'got {metric!r}')
    if rank_by is not None and rank_by not in METRICS:
        raise ValueError(f'`rank_by` should be None or one of '
                         f'{METRICS}, but got {rank_by!r}')
    if shrink not in SHRINK_MODES:
        raise ValueError(f'`shrink` should be one of {tuple(SHRINK_MODES)}, '
                         f'but got {shrink!r}')


def is_table(table) -> bool:
    """Whether ``table`` is a measured latency table (not its keyword
    arguments)."""
    return isinstance(table, dict) and 'layers' in table


def importance_cfg(importance: Union[str, dict]) -> dict:
    """``importance`` (a name or a config of ``IMPORTANCES``) as a config;
    a KeyError naming the registered scores if it is none of them."""
    cfg = dict(type=importance) if isinstance(importance,
                                              str) else dict(importance)
    if cfg.get('type') not in IMPORTANCES:
        raise KeyError(
            f'`importance` should be one of '
            f'{sorted(IMPORTANCES.module_dict)} (mmcpd.registry.'
            f"IMPORTANCES), but got {cfg.get('type')!r}")
    return cfg


@dataclass(frozen=True)
class PruneSettings:
    """The validated arguments of a prune session.

    Args:
        target (float): Fraction of the ``metric`` to remove, in (0, 1).
        metric (str): ``'params'``, ``'flops'``, ``'latency_proxy'`` or
            ``'latency'`` (measured, a latency table). Defaults to
            ``'params'``.
        shrink (str): ``'physical'`` (cut out) or ``'mask'`` (held at
            zero). Defaults to ``'physical'``.
        importance (str | dict): A score of ``IMPORTANCES``. Defaults to
            ``'hessian'``.
        min_channels (int | str): Channels every group keeps at least;
            ``'measured'``: per group, the narrowest width than which
            nothing narrower is measurably faster on this machine
            (:func:`~mmcpd.prune.widths.measured_floor`). Defaults to 1.
        max_ratio (float): Largest fraction of a group's channels removed,
            in (0, 1]. Defaults to 0.9.
        round_to (int | str): Channel block of the width rule;
            ``'measured'``: per group, the finest multiple whose unaligned
            widths are not measurably slower on this machine
            (:func:`~mmcpd.prune.widths.measured_quantum`). Either
            ``'measured'`` needs a latency table, measured with its width
            windows (``widths=True``, added to ``latency_table``'s keyword
            arguments). Defaults to ``ROUND_TO``.
        rank_by (str, optional): The cost that ranks units if not
            ``metric``. Defaults to None.
        act_weight (float): MACs per written activation element in the
            latency proxy. Defaults to ``ACT_WEIGHT``.
        latency_table (dict, optional): A latency table or the keyword
            arguments that measure one. Defaults to None.
        closed_loop (bool | dict): With ``metric='latency'``, meet the
            target on the measured latency (:mod:`.closed_loop`).
            Defaults to True.
        ignore (Sequence[str]): Module name patterns never pruned.
            Defaults to ().
    """
    target: float
    metric: str = 'params'
    shrink: str = 'physical'
    importance: Union[str, dict] = 'hessian'
    min_channels: Union[int, str] = 1
    max_ratio: float = 0.9
    round_to: Union[int, str] = ROUND_TO
    rank_by: Optional[str] = None
    act_weight: float = ACT_WEIGHT
    latency_table: Optional[dict] = None
    closed_loop: Union[bool, dict] = True
    ignore: Tuple[str, ...] = field(default=())

    def __post_init__(self):
        target = self.target
        if not isinstance(target, (int, float)) or isinstance(
                target, bool) or not 0 < target < 1:
            raise ValueError(
                f'`target` should be in (0, 1), but got {target!r}')
        check_pruner_args(self.metric, self.rank_by, self.shrink)
        act_weight = self.act_weight
        if not isinstance(act_weight, (int, float)) or isinstance(
                act_weight, bool) or act_weight < 0:
            raise ValueError('`act_weight` should be a number >= 0, but got '
                             f'{act_weight!r}')
        table = self.latency_table
        if table is not None and not isinstance(table, dict):
            raise ValueError('`latency_table` should be None or a dict (a '
                             'table or its keyword arguments), but got '
                             f'{type(table).__name__}')
        self.loop  # checks `closed_loop`
        check_width_limit('min_channels', self.min_channels)
        check_width_limit('round_to', self.round_to)
        if self.measured_widths and not is_table(table):
            object.__setattr__(self, 'latency_table',
                               dict(table or {}, widths=True))
        max_ratio = self.max_ratio
        if not isinstance(max_ratio, (int, float)) or isinstance(
                max_ratio, bool) or not 0 < max_ratio <= 1:
            raise ValueError(
                f'`max_ratio` should be in (0, 1], but got {max_ratio!r}')
        ignore = self.ignore
        if isinstance(ignore, str) or not all(
                isinstance(p, str) for p in ignore):
            raise TypeError('`ignore` should be a sequence of module name '
                            f'patterns, but got {ignore!r}')
        object.__setattr__(self, 'ignore', tuple(ignore))
        object.__setattr__(self, 'target', float(target))
        object.__setattr__(self, 'act_weight', float(act_weight))
        object.__setattr__(self, 'max_ratio', float(max_ratio))
        object.__setattr__(self, 'importance',
                           importance_cfg(self.importance))

    @property
    def loop(self) -> Optional[Tuple[dict, dict]]:
        """The closed loop's and its meter's keyword arguments, or None
        (off, or a metric other than ``'latency'``)."""
        if self.metric != 'latency':
            return None
        return loop_settings(self.closed_loop)

    @property
    def measured_widths(self) -> bool:
        """Whether the width rule is measured (``round_to`` or
        ``min_channels`` is ``'measured'``)."""
        return MEASURED in (self.round_to, self.min_channels)

    @property
    def needs_table(self) -> bool:
        """Whether a latency table is needed (``'latency'`` counts or
        ranks, or the width rule is measured)."""
        return 'latency' in (self.metric, self.rank_by) or \
            self.measured_widths

    @property
    def guards(self) -> Guards:
        """The per-group limits (without the width rule's multiples, which
        depend on the model: :func:`~mmcpd.prune.widths.with_quanta`)."""
        return Guards(self.min_channels, self.max_ratio, self.round_to)

    def build_importance(self) -> BaseImportance:
        """A new importance score of ``importance``."""
        return build_own(IMPORTANCES, dict(self.importance))


def check_input_shape(input_shape: Sequence[int]) -> Tuple[int, ...]:
    """``input_shape`` as a tuple; a ValueError unless it is positive ints
    of at least two dims."""
    if not all(isinstance(s, int) and s > 0 for s in input_shape) \
            or len(input_shape) < 2:
        raise ValueError('`input_shape` should be positive ints like '
                         f'(1, 3, 224, 224), but got {input_shape!r}')
    return tuple(input_shape)
