"""Random importance: the baseline every score must beat."""
import torch

from mmcpd.registry import IMPORTANCES
from mmcpd.prune.importance.base import BaseImportance


@IMPORTANCES.register_module(name='random')
class RandomImportance(BaseImportance):
    """Uniform random scores in ``[0, 1)``, the same on every DDP rank.

    Args:
        seed (int): Seed of the generator; the scores of prune step ``k``
            come from seed ``seed + k``, so a resumed run draws the same
            ones. Defaults to 0.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        if not isinstance(seed, int):
            raise TypeError(f'`seed` should be an int, but got {seed!r}')
        self.seed = seed
        self.draws = 0

    def _compute(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed + self.draws)
        self.draws += 1
        return torch.rand(self.units.total, generator=gen,
                          dtype=torch.float64)

    def state_dict(self) -> dict:
        return dict(super().state_dict(), draws=self.draws)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.draws = int(state.get('draws', 0))
