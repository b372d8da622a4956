"""When a distillation term counts: a weight schedule over iterations."""
import math
from dataclasses import dataclass

#: The ways a term's weight goes from 1 to 0 by ``end``.
RAMPS = ('step', 'linear', 'cosine')


@dataclass(frozen=True)
class WeightSchedule:
    """Factor on a distillation term's loss, by training iteration.

    With ``ramp='step'`` the term counts fully before iteration ``end`` and
    not at all from ``end`` on (e.g. distillation during pruning only);
    ``'linear'`` and ``'cosine'`` take the factor from 1 at iteration 0 to
    0 at ``end`` (ramped down):

    - step: ``f(i) = 1 if i < end else 0``
    - linear: ``f(i) = max(0, 1 - i / end)``
    - cosine: ``f(i) = (1 + cos(pi * min(i, end) / end)) / 2``

    The iteration is the runner's (mmengine's ``MessageHub`` info
    ``iter``, kept across resumes); outside a runner it is 0.

    Args:
        end (int): First iteration at which the factor is 0.
        ramp (str): ``'step'``, ``'linear'`` or ``'cosine'``. Defaults to
            ``'step'``.
    """
    end: int
    ramp: str = 'step'

    def __post_init__(self) -> None:
        if (not isinstance(self.end, int) or isinstance(self.end, bool)
                or self.end < 1):
            raise ValueError('`end` of a weight schedule should be a '
                             f'positive int, but got {self.end!r}')
        if self.ramp not in RAMPS:
            raise ValueError(f'`ramp` of a weight schedule should be one of '
                             f'{RAMPS}, but got {self.ramp!r}')

    def factor(self, iteration: int) -> float:
        """The factor at ``iteration`` (0-based), in [0, 1]."""
        if iteration >= self.end:
            return 0.0
        if self.ramp == 'step':
            return 1.0
        progress = max(iteration, 0) / self.end
        if self.ramp == 'linear':
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def current_iteration() -> int:
    """The training iteration of the current mmengine runner, else 0."""
    from mmengine.logging import MessageHub
    return int(MessageHub.get_current_instance().get_info('iter', 0))
