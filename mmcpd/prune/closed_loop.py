"""A latency target met by measuring: select, measure, re-target.

A latency table predicts what pruning saves, and isolated one-layer timings
over-credit it (fusion, layout changes and memory-bound ops are not in
them): asking the table for half the latency gave 1.38x to 1.89x measured
speedups instead of 2x. :class:`LatencyLoop` closes the loop on the real
model: it selects units at a *predicted* fraction, has the pruned model
measured, and moves the predicted fraction until the *measured* speedup is
within ``tol`` of the target. It keeps the (predicted, measured) pairs it
saw, so a later call (the next prune step of a
:class:`~mmcpd.engine.hooks.CPDHook`) starts from the calibrated guess.

Nothing here times anything: the caller injects ``measure`` (for example
:class:`mmcpd.deploy.meter.LatencyMeter`, onnxruntime), so this stays free
of any runtime and framework.
"""
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmcpd.comb.group import Removed

#: A (predicted, measured) fraction removed.
Point = Tuple[float, float]


def check_loop_args(tol: float, rounds: int,
                    calibrate: Sequence[float] = ()) -> None:
    """ValueErrors naming a bad ``tol``, ``rounds`` or ``calibrate``."""
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or \
            not 0 < tol < 1:
        raise ValueError(f'`tol` should be in (0, 1), but got {tol!r}')
    if not isinstance(rounds, int) or isinstance(rounds, bool) or \
            rounds < 1:
        raise ValueError(f'`rounds` should be an int >= 1, but got '
                         f'{rounds!r}')
    if isinstance(calibrate, str) or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool)
            and 0 < r < 1 for r in calibrate):
        raise ValueError('`calibrate` should be fractions in (0, 1) of '
                         f'every group to remove, but got {calibrate!r}')


#: Keys of ``closed_loop`` that set the loop; the others go to the meter.
LOOP_KEYS = ('tol', 'rounds', 'calibrate')
#: Keys of ``closed_loop`` that set the meter
#: (:class:`mmcpd.deploy.meter.LatencyMeter`), or replace it (``measure``:
#: a callable, model -> latency over the unpruned model's).
METER_KEYS = ('threads', 'runs', 'warmup', 'provider', 'measure')


def loop_settings(closed_loop) -> Optional[Tuple[dict, dict]]:
    """``closed_loop`` (True, False or a dict of :data:`LOOP_KEYS` and
    :data:`METER_KEYS`) as the loop's and the meter's keyword arguments;
    None when it is off."""
    if closed_loop is False or closed_loop is None:
        return None
    if closed_loop is True:
        closed_loop = {}
    if not isinstance(closed_loop, dict):
        raise TypeError('`closed_loop` should be a bool or a dict of '
                        f'{LOOP_KEYS + METER_KEYS}, but got '
                        f'{type(closed_loop).__name__}')
    unknown = sorted(set(closed_loop) - set(LOOP_KEYS + METER_KEYS))
    if unknown:
        raise ValueError(f'`closed_loop` should have keys of '
                         f'{LOOP_KEYS + METER_KEYS}, but got {unknown}')
    loop = {k: v for k, v in closed_loop.items() if k in LOOP_KEYS}
    check_loop_args(loop.get('tol', 0.03), loop.get('rounds', 4),
                    loop.get('calibrate', ()))
    measure = closed_loop.get('measure')
    if measure is not None and not callable(measure):
        raise TypeError('`closed_loop.measure` should be a callable (model '
                        '-> latency ratio), but got '
                        f'{type(measure).__name__}')
    return loop, {k: v for k, v in closed_loop.items() if k in METER_KEYS}


def _key(new: Removed) -> tuple:
    return tuple((int(g), tuple(u)) for g, u in sorted(new.items()))


def speedup_error(target: float, ratio: float) -> float:
    """Relative error of a measured speedup against the target's:
    :math:`(1 - target) / ratio - 1` (``ratio``: pruned / unpruned
    latency); 0.03 is 3% faster than asked."""
    return (1.0 - target) / ratio - 1.0


class LatencyLoop:
    """Finds the predicted fraction whose selection measures ``target``.

    Each round selects the units at a predicted fraction :math:`p` of the
    cost, has the model measured (latency ratio :math:`r`, the measured
    fraction removed is :math:`m = 1 - r`) and keeps :math:`(p, m)`. The
    next :math:`p` interpolates linearly between the two pairs that
    bracket the goal (with :math:`(0, 0)`), or, with none above it, scales
    the best pair through the origin (:math:`p\\,g/m`). It stops when the
    measured speedup is within ``tol`` of the target's
    (:func:`speedup_error`) or after ``rounds``, and returns the selection
    that measured closest.

    Args:
        tol (float): Relative speedup error that is close enough. Defaults
            to 0.03.
        rounds (int): At most this many measurements per call. Defaults
            to 4.
        points (Sequence[Sequence[float]]): (predicted, measured) removed
            fractions seen before, e.g. :attr:`points` of a checkpoint.
            Defaults to ().
        calibrate (Sequence[float]): Before the first selection, measure
            the model with these fractions of every group's units removed
            and fit the cost to them (``LatencyCost.calibrate``, see
            :meth:`~mmcpd.prune.pruner.Pruner.measured_step`); the pairs
            seed :attr:`points`. Defaults to ().

    Examples:
        >>> loop = LatencyLoop(tol=0.03)
        >>> new, log = loop.run(0.5, select, predicted, measure, 0.9)
    """

    def __init__(self,
                 tol: float = 0.03,
                 rounds: int = 4,
                 points: Sequence[Sequence[float]] = (),
                 calibrate: Sequence[float] = ()):
        check_loop_args(tol, rounds, calibrate)
        self.calibrate = tuple(float(r) for r in calibrate)
        self.tol = float(tol)
        self.rounds = rounds
        self.points: List[Point] = [
            (float(p), float(m)) for p, m in points
        ]

    def _neighbours(self,
                    goal: float) -> Tuple[Optional[Point], Optional[Point]]:
        """The (predicted, measured) pairs, :math:`(0, 0)` included,
        measured nearest below and at or above ``goal``; None where there
        is none."""
        pts = [(0.0, 0.0)] + self.points
        below = [pt for pt in pts if pt[1] < goal]
        above = [pt for pt in pts if pt[1] >= goal]
        return (max(below, key=lambda pt: pt[1]) if below else None,
                min(above, key=lambda pt: pt[1]) if above else None)

    def guess(self, goal: float, reachable: float = 1.0) -> float:
        """The predicted fraction expected to measure ``goal``."""
        lo, hi = self._neighbours(goal)
        if lo is None:  # goal <= 0
            p = 0.0
        elif hi is not None:
            w = (goal - lo[1]) / (hi[1] - lo[1]) if hi[1] > lo[1] else 1.0
            p = lo[0] + w * (hi[0] - lo[0])
        else:
            p = goal if lo[1] <= 0 else lo[0] * goal / lo[1]
        return float(min(max(p, 0.0), reachable))

    def _bracket(self, goal: float, reachable: float) -> Tuple[float, float]:
        """Predicted fractions of the pairs measured nearest below and
        above ``goal`` (0 and ``reachable`` where there are none)."""
        lo, hi = self._neighbours(goal)
        return (0.0 if lo is None else lo[0],
                reachable if hi is None else hi[0])

    def _select_new(self, goal: float, select: Callable[[float], Removed],
                    reachable: float, tried: dict) -> Optional[Removed]:
        """Units at the guess; if they were measured before (selections
        are coarse and can overshoot the fraction asked), the other
        fractions within the measured bracket are tried, nearest to the
        guess first, never past it; None when none gives new units."""
        guess = self.guess(goal, reachable)
        lo, hi = self._bracket(goal, reachable)
        steps = [lo + (hi - lo) * k / 8 for k in range(1, 8)]
        for p in [guess] + sorted(steps, key=lambda v: abs(v - guess)):
            new = select(p)
            if _key(new) not in tried:
                return new
        return None

    def run(self,
            goal: float,
            select: Callable[[float], Removed],
            predicted: Callable[[Removed], float],
            measure: Callable[[Removed], float],
            reachable: float = 1.0,
            rounds: Optional[int] = None) -> Tuple[Removed, dict]:
        """Select units so that the measured fraction removed is ``goal``.

        Args:
            goal (float): Fraction of the measured latency to have removed.
            select (callable): ``select(p)``: the new units that remove a
                predicted fraction ``p`` (unpruned numbering).
            predicted (callable): ``predicted(new)``: the predicted
                fraction removed with ``new`` gone too.
            measure (callable): ``measure(new)``: measured latency of the
                model with ``new`` gone too over the unpruned one's.
            reachable (float): The largest predicted fraction. Defaults to
                1.
            rounds (int, optional): Measurements at most. Defaults to
                :attr:`rounds`.

        Returns:
            tuple: The new units that measured closest and a log: ``goal``,
            ``rounds`` (each with ``predicted``, ``measured`` ratio,
            ``error``, ``seconds``), ``ratio``, ``error`` and ``seconds``
            of the one returned.
        """
        rounds = self.rounds if rounds is None else rounds
        check_loop_args(self.tol, rounds)
        best: Optional[Tuple[float, Removed, float]] = None
        log: dict = dict(goal=float(goal), rounds=[])
        tried: Dict[tuple, Tuple[float, float]] = {}
        for _ in range(rounds):
            start = time.perf_counter()
            new = self._select_new(goal, select, reachable, tried)
            if new is None:  # only units measured before: nothing to learn
                break
            p = float(predicted(new))
            ratio = float(measure(new))
            tried[_key(new)] = (p, ratio)
            self.points.append((p, 1.0 - ratio))
            error = speedup_error(goal, ratio)
            log['rounds'].append(
                dict(predicted=round(1.0 - p, 4), measured=round(ratio, 4),
                     error=round(error, 4),
                     seconds=round(time.perf_counter() - start, 2)))
            if best is None or abs(error) < abs(best[0]):
                best = (error, new, ratio)
            if abs(error) <= self.tol:
                break
        if best is None:
            return {}, dict(log, ratio=1.0, error=speedup_error(goal, 1.0),
                            seconds=0.0)
        log.update(ratio=best[2], error=best[0],
                   seconds=round(sum(r['seconds'] for r in log['rounds']),
                                 2))
        return best[1], log
