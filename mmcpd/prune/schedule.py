"""When to prune, and how much in total at each prune step."""
from typing import Callable, Dict, Optional

from mmengine.registry import Registry

#: Without ``end`` or ``num_steps``, the last prune step is at this
#: fraction of the training iterations, and the rest fine-tunes the pruned
#: model. A quarter kept more accuracy than half on every task of the
#: transfer benchmark, at 4x and 8x fewer FLOPs, three seeds
#: (docs/quality/transfer.md; was half until issue 23).
END_FRACTION = 0.25

#: Sparsity curves: ``fn(progress in [0, 1]) -> fraction of the target``.
SCHEDULES = Registry('prune schedule', locations=['mmcpd.prune.schedule'])


@SCHEDULES.register_module(name='linear')
def linear(progress: float) -> float:
    """Equal amounts at every step: ``s_k = target * k / K``."""
    return progress


@SCHEDULES.register_module(name='cubic')
def cubic(progress: float) -> float:
    """Fast first, slow at the end: ``s_k = target * (1 - (1 - k/K)^3)``.

    References:
        Zhu and Gupta, "To prune, or not to prune: exploring the efficacy of
        pruning for model compression", ICLR workshops 2018.
    """
    return 1.0 - (1.0 - progress)**3


class PruneSchedule:
    """Prune steps at ``start + k * interval`` for ``k = 1 .. num_steps``.

    Importance is gathered from iteration ``start`` on; step ``k`` happens
    once ``start + k * interval`` iterations are done and brings the removed
    fraction to ``target * curve(k / num_steps)``. After the last step the
    architecture stays fixed (fine-tuning).

    Args:
        target (float): Final fraction of the cost to remove, in (0, 1).
        interval (int): Iterations between prune steps, >= 1.
        start (int): Iteration at which gathering starts. Defaults to 0.
        end (int, optional): Iteration of the last prune step; give this or
            ``num_steps``.
        num_steps (int, optional): Number of prune steps.
        kind (str): A curve of :data:`SCHEDULES`: ``'linear'`` or
            ``'cubic'``. Defaults to ``'linear'``.

    Examples:
        >>> s = PruneSchedule(0.5, interval=10, start=0, num_steps=5)
        >>> [s.step_at(i) for i in (9, 10, 20)]
        [None, 1, 2]
        >>> s.target_at(5)
        0.5
    """

    def __init__(self,
                 target: float,
                 interval: int,
                 start: int = 0,
                 end: Optional[int] = None,
                 num_steps: Optional[int] = None,
                 kind: str = 'linear'):
        check_schedule_args(target, interval, start, end, num_steps, kind)
        if end is not None:
            num_steps = (end - start) // interval
        self.target = float(target)
        self.interval = interval
        self.start = start
        self.num_steps = num_steps
        self.kind = kind
        self._curve: Callable = SCHEDULES.get(kind)

    @property
    def end(self) -> int:
        """Iteration of the last prune step."""
        return self.start + self.num_steps * self.interval

    def step_at(self, done_iters: int) -> Optional[int]:
        """The prune step due once ``done_iters`` iterations ran, or None."""
        offset = done_iters - self.start
        if offset <= 0 or offset % self.interval:
            return None
        step = offset // self.interval
        return step if step <= self.num_steps else None

    def target_at(self, step: int) -> float:
        """Fraction of the cost removed after prune step ``step``."""
        step = min(max(step, 0), self.num_steps)
        return self.target * self._curve(step / self.num_steps)

    def to_dict(self) -> Dict:
        return dict(target=self.target, interval=self.interval,
                    start=self.start, num_steps=self.num_steps,
                    kind=self.kind)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_schedule_args(target, interval, start, end, num_steps,
                        kind) -> None:
    """Validate schedule arguments; errors name the field."""
    if not isinstance(target, (int, float)) or isinstance(target, bool) \
            or not 0 < target < 1:
        raise ValueError(f'`target` should be in (0, 1), but got {target!r}')
    if not _is_int(interval) or interval < 1:
        raise ValueError(
            f'`interval` should be an int >= 1, but got {interval!r}')
    if not _is_int(start) or start < 0:
        raise ValueError(f'`start` should be an int >= 0, but got {start!r}')
    if end is not None and num_steps is not None:
        raise ValueError('give `end` or `num_steps`, not both (got '
                         f'end={end!r}, num_steps={num_steps!r})')
    if end is not None and (not _is_int(end) or end < start + interval):
        raise ValueError('`end` should be an int >= start + interval = '
                         f'{start + interval} (at least one prune step), '
                         f'but got {end!r}')
    if num_steps is not None and (not _is_int(num_steps) or num_steps < 1):
        raise ValueError(
            f'`num_steps` should be an int >= 1, but got {num_steps!r}')
    if kind not in SCHEDULES:
        raise KeyError(f'`schedule` should be one of '
                       f'{sorted(SCHEDULES.module_dict)}, but got {kind!r}')
