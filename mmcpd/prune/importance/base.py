"""The interface of importance scores."""
import warnings
from abc import ABCMeta, abstractmethod
from typing import Dict, Sequence

import torch
from mmengine.dist import all_reduce, get_world_size
from torch import nn

from mmcpd.comb.group import CoupledGroup
from mmcpd.prune.importance.units import UnitMap, named_tensors


class BaseImportance(metaclass=ABCMeta):
    """Scores every unit of the prunable groups: low scores go first.

    A score is built in three phases, driven by
    :class:`~mmcpd.engine.hooks.CPDHook`:
    :meth:`setup` once the groups are known, :meth:`accumulate` once per
    optimizer step, after AMP unscaling and before gradient clipping (only
    for scores with ``uses_grad = True``; a step whose gradients are not
    finite is skipped and counted in :attr:`skipped_steps`), and
    :meth:`scores` at each prune step, followed by :meth:`reset`. Scores are
    per unit and are *not* normalised by cost: the selection divides by the
    cost of each unit.

    To add a score, subclass this, implement :meth:`_compute` (and
    :meth:`accumulate` if it reads gradients) and register it::

        @IMPORTANCES.register_module(name='mine')
        class MyImportance(BaseImportance):
            ...
    """
    #: Whether the score is gathered from gradients at optimizer steps.
    uses_grad = False

    def __init__(self):
        self.units: UnitMap = None
        self.model: nn.Module = None
        self.num_steps = 0
        #: Optimizer steps whose gradients were not finite and were left
        #: out of the scores, over the whole run (not reset by :meth:`reset`).
        self.skipped_steps = 0
        self._skipped_since_reset = 0
        self._warned = False

    def setup(self, model: nn.Module, groups: Sequence[CoupledGroup]) -> None:
        """Build the index tables for ``groups`` of ``model``.

        Args:
            model (nn.Module): The model whose parameters are scored.
            groups (Sequence[CoupledGroup]): The prunable groups.
        """
        params = named_tensors(model)
        device = next(iter(params.values())).device if params else 'cpu'
        self.model = model
        self.units = UnitMap(groups, {k: v.shape
                                      for k, v in params.items()}, device)
        self.reset()

    def accumulate(self) -> None:
        """Add the current gradients' contribution (one optimizer step)."""

    @abstractmethod
    def _compute(self) -> torch.Tensor:
        """Flat per-unit scores of this process (``units.total`` floats)."""

    def scores(self) -> Dict[int, torch.Tensor]:
        """Per-unit scores by group id, averaged over the DDP ranks.

        Returns:
            dict[int, Tensor]: float64 CPU vectors of ``num_units`` scores.
        """
        flat = self._compute().detach().to(torch.float64)
        if get_world_size() > 1:
            all_reduce(flat, op='mean')
        bad = ~torch.isfinite(flat)
        if bad.any():  # prune what could not be scored last
            warnings.warn(f'{type(self).__name__}: {int(bad.sum())} unit '
                          'scores are NaN or inf (non-finite gradients?); '
                          'those units are ranked last')
            flat = flat.masked_fill(bad, float('inf'))
        return {k: v.cpu() for k, v in self.units.split(flat).items()}

    def reset(self) -> None:
        """Forget what was accumulated (called after each prune step)."""
        self.num_steps = 0
        self._skipped_since_reset = 0

    def state_dict(self) -> dict:
        """What a checkpoint must hold to resume the accumulation."""
        return dict(
            num_steps=self.num_steps,
            skipped_steps=self.skipped_steps,
            skipped_since_reset=self._skipped_since_reset)

    def load_state_dict(self, state: dict) -> None:
        self.num_steps = int(state.get('num_steps', 0))
        self.skipped_steps = int(state.get('skipped_steps', 0))
        self._skipped_since_reset = int(state.get('skipped_since_reset', 0))

    def _skip_step(self) -> None:
        """Count a step left out for its non-finite gradients; warn once."""
        self.skipped_steps += 1
        self._skipped_since_reset += 1
        if not self._warned:
            self._warned = True
            warnings.warn(
                f'{type(self).__name__}: skipped an optimizer step whose '
                f'gradients are NaN or inf ({self.skipped_steps} skipped so '
                'far); such steps add nothing to the scores, are counted in '
                '`skipped_steps` and are not warned about again')

    def _params(self) -> Dict[str, torch.Tensor]:
        return named_tensors(self.model)


class GradImportance(BaseImportance):
    """A score summed over optimizer steps from ``w * dL/dw`` unit sums.

    Subclasses define :meth:`_per_step`, mapping the per-unit sums
    ``s_u = sum_{i in u} w_i g_i`` of one step to that step's scores.
    """
    uses_grad = True

    def reset(self) -> None:
        super().reset()
        self._acc = None

    def setup(self, model: nn.Module, groups: Sequence[CoupledGroup]) -> None:
        super().setup(model, groups)
        # w * g goes into buffers kept between steps: allocating a fresh
        # model-sized tensor at every step costs more than the product on
        # CPU (page faults). They take as much memory as the weights.
        self._buffers: Dict[str, torch.Tensor] = {}

    def accumulate(self) -> None:
        """Add this step's scores, or skip the step if they are not finite.

        A step is skipped as a whole (no group gets anything from it) when
        any gradient element the score reads is NaN or inf, or when its
        per-unit scores overflow; it is counted in :attr:`skipped_steps`.
        """
        params = self._params()
        values = {}
        for name in self.units.names:
            param = params.get(name)
            if param is None or param.grad is None:
                continue
            buf = self._buffers.get(name)
            if buf is None or buf.shape != param.shape \
                    or buf.dtype != param.grad.dtype:
                buf = self._buffers[name] = torch.empty_like(param.grad)
            values[name] = torch.mul(param.detach(), param.grad, out=buf)
        if not values:
            return
        # The last entry sums the positions outside every group, so the
        # sums cover every element read: w * g is NaN or inf wherever g is
        # (0 * inf is NaN too), and NaN and inf never cancel in a sum.
        sums = self.units.unit_sums(values)
        step = self._per_step(sums[:-1])
        # No communication is needed to decide the same on every DDP rank:
        # DDP all-reduces the gradients in the backward pass, so at the
        # optimizer step every rank holds the same gradients (and weights).
        # The scores are all-reduced only at the prune step (`scores`).
        if not bool(torch.isfinite(sums).all() & torch.isfinite(step).all()):
            self._skip_step()
            return
        self._acc = step if self._acc is None else self._acc + step
        self.num_steps += 1

    @abstractmethod
    def _per_step(self, sums: torch.Tensor) -> torch.Tensor:
        """Scores of one step from the unit sums of ``w * dL/dw``."""

    def _compute(self) -> torch.Tensor:
        if self._acc is None and self._skipped_since_reset:
            raise RuntimeError(
                f'{type(self).__name__} has no gradients to score: the '
                f'gradients of all {self._skipped_since_reset} optimizer '
                'steps since the last prune step were NaN or inf')
        if self._acc is None:
            raise RuntimeError(
                f'{type(self).__name__} has no gradients to score: no '
                'optimizer step ran since the last prune step (is `interval` '
                'smaller than `accumulative_counts`, or are the pruned '
                'parameters outside the optimizer?)')
        return self._acc

    def state_dict(self) -> dict:
        state = super().state_dict()
        state['acc'] = None if self._acc is None else self._acc.cpu()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        acc = state.get('acc')
        if acc is not None and self.units is not None:
            if acc.numel() != self.units.total:
                raise ValueError(
                    f'the importance state holds {acc.numel()} unit scores '
                    f'but the groups have {self.units.total} units')
            device = next(iter(self.units.tables.values())).device
            acc = acc.to(device)
        self._acc = acc
