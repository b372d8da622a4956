"""How removed units leave a model: cut out, or held at zero.

A :class:`~mmcpd.prune.pruner.Pruner` keeps the units removed so far in the
unpruned numbering; a shrink mode says what that means for the tensors:

- :class:`CutOut` (``'physical'``): the model is cut for real at every step
  (:func:`~mmcpd.prune.surgery.physical.prune_units`), with every
  optimizer's param groups and state (:mod:`.surgery.optim_state`) and any
  copies of the model (an EMA); the pruner keeps the comb result of the cut
  model (:func:`~mmcpd.comb.remap.remap`) for the next step.
- :class:`HoldAtZero` (``'mask'``): removed units stay in the tensors, held
  at zero (:class:`~mmcpd.prune.surgery.dead.DeadUnits`); shapes never
  change, and a cut copy is made only to deploy.

Both choose the same units: the importance of the units still in the model
is mapped back to the unpruned numbering (:meth:`ShrinkMode.full_scores`).
"""
from typing import Dict, Mapping, Sequence, Tuple

import torch
from torch import nn

from mmcpd.comb.group import Removed
from mmcpd.comb.remap import remap
from mmcpd.prune.spec import PrunedSpec
from mmcpd.prune.surgery.dead import DeadUnits
from mmcpd.prune.surgery.mask import kept_channels
from mmcpd.prune.surgery.optim_state import shrink_optimizer
from mmcpd.prune.surgery.physical import (Replaced, prune_units,
                                          pruned_copy)
from mmcpd.utils.module import cpu_copy


class ShrinkMode:
    """What removing units does to a pruner's model (one per pruner)."""
    #: The ``shrink`` name of the mode.
    name = ''
    #: Whether tensors keep their shapes (nothing downstream must follow).
    keeps_shapes = True

    def full_scores(self, pruner, scores: Dict[int, torch.Tensor]
                    ) -> Dict[int, torch.Tensor]:
        """``scores`` of the model's units in the unpruned numbering."""
        return scores

    def to_current(self, pruner, new: Removed) -> Dict[int, list]:
        """``new`` (unpruned numbering) in the numbering of the model."""
        return {int(g): sorted(int(u) for u in v)
                for g, v in new.items() if len(v)}

    def apply(self, pruner, model: nn.Module, delta: Dict[int, list],
              optimizers: Sequence[torch.optim.Optimizer],
              copies: Sequence[nn.Module]) -> Replaced:
        """Remove ``delta`` (model numbering) from ``model``, its optimizers
        and copies, once ``pruner.removed`` holds them; the replaced
        tensors of ``model``."""
        raise NotImplementedError

    def candidate(self, pruner, model: nn.Module, new: Removed) -> nn.Module:
        """A cut copy of ``model`` with ``new`` removed too."""
        raise NotImplementedError

    def small(self, pruner, model: nn.Module) -> Tuple[nn.Module, PrunedSpec]:
        """The small model and its spec against the unpruned one."""
        raise NotImplementedError

    def restore(self, pruner, removed: Removed) -> Removed:
        """Take ``removed`` from a checkpoint into ``pruner``; return what
        is left to :meth:`~mmcpd.prune.pruner.Pruner.apply` to the model
        as built."""
        raise NotImplementedError


class HoldAtZero(ShrinkMode):
    """``'mask'``: removed units are held at zero, shapes never change."""
    name = 'mask'
    keeps_shapes = True

    def apply(self, pruner, model, delta, optimizers, copies) -> Replaced:
        pruner.dead = DeadUnits(model, pruner.comb.groups, pruner.removed)
        pruner.dead.zero_tensors()
        for optimizer in optimizers:
            pruner.dead.zero_optimizer_state(optimizer)
        for copy in copies:
            DeadUnits(copy, pruner.comb.groups, pruner.removed).zero_tensors()
        # norms over channels count the kept ones only
        # (:func:`~mmcpd.prune.surgery.mask.exact_norms`)
        pruner.exact_norms = bool(
            pruner.removed and kept_channels(pruner.comb, pruner.removed))
        return {}

    def candidate(self, pruner, model, new) -> nn.Module:
        return pruned_copy(cpu_copy(model), pruner.comb,
                           pruner.with_removed(new))[0]

    def small(self, pruner, model):
        return pruned_copy(model, pruner.comb, pruner.removed)

    def restore(self, pruner, removed) -> Removed:
        pruner.removed = dict(removed)
        return {}


class CutOut(ShrinkMode):
    """``'physical'``: removed units are cut out of the model for real."""
    name = 'physical'
    keeps_shapes = False

    def full_scores(self, pruner, scores):
        kept = pruner.kept_units()
        out = {}
        for group in pruner.groups:
            full = torch.full((group.num_units, ), float('inf'),
                              dtype=torch.float64)
            now = scores.get(group.id)
            if now is not None:
                full[kept[group.id]] = now.to(torch.float64)
            out[group.id] = full
        return out

    def to_current(self, pruner, new):
        kept = pruner.kept_units()
        out = {}
        for gid, units in new.items():
            where = {u: i for i, u in enumerate(kept[int(gid)])}
            units = sorted(where[int(u)] for u in units)
            if units:
                out[int(gid)] = units
        return out

    def apply(self, pruner, model, delta, optimizers, copies) -> Replaced:
        replaced: Replaced = {}
        if not delta:
            return replaced
        spec = prune_units(model, pruner.current, delta, replaced)
        # each cut's spec lists what it touched: later values win
        pruner.cuts.shapes.update(spec.shapes)
        for module, attrs in spec.attrs.items():
            pruner.cuts.attrs.setdefault(module, {}).update(attrs)
        for optimizer in optimizers:
            shrink_optimizer(optimizer, replaced)
        for copy in copies:
            prune_units(copy, pruner.current, delta)
        pruner.current = remap(pruner.current, delta)
        pruner.importance.setup(model, pruner.current.prunable)
        return replaced

    def candidate(self, pruner, model, new) -> nn.Module:
        small = cpu_copy(model)
        delta = self.to_current(pruner, new)
        if delta:
            prune_units(small, pruner.current, delta)
        return small

    def small(self, pruner, model):
        return model, PrunedSpec(
            {k: list(v)
             for k, v in pruner.cuts.shapes.items()},
            {k: dict(v)
             for k, v in pruner.cuts.attrs.items()})

    def restore(self, pruner, removed) -> Removed:
        return dict(removed)


#: The shrink modes by name.
SHRINK_MODES: Mapping[str, type] = {
    mode.name: mode
    for mode in (CutOut, HoldAtZero)
}
