"""Distillation terms: which outputs a loss compares, and its log name."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

from torch import nn

from mmcpd.registry import DISTILL_LOSSES, build_own
from mmcpd.distill.schedule import WeightSchedule

#: The ``outputs`` value that selects the task logits.
LOGITS = 'logits'


@dataclass(frozen=True)
class DistillTerm:
    """One distillation term of a :class:`DistillWrapper`.

    Args:
        key (str): Name of the term in the loss dict, containing ``loss``
            (``loss_kd``, ``loss_feat_backbone_layer4``, ...).
        student (str | None): Student submodule whose output is distilled;
            None for the logits.
        teacher (str | None): The teacher's submodule; None for logits.
        loss (nn.Module): The loss, called as ``loss(student, teacher)``.
        schedule (WeightSchedule, optional): Factor on the loss by
            training iteration; None: always 1. Defaults to None.
    """
    key: str
    student: Optional[str]
    teacher: Optional[str]
    loss: nn.Module
    schedule: Optional[WeightSchedule] = None

    def factor(self, iteration: int) -> float:
        """Factor on the loss at ``iteration``: 1 without a schedule."""
        return 1.0 if self.schedule is None else self.schedule.factor(
            iteration)

    @property
    def on_logits(self) -> bool:
        return self.student is None

    def __str__(self) -> str:
        where = (
            LOGITS if self.on_logits else
            f'student.{self.student} -> teacher.{self.teacher}')
        return f'{self.key}  {type(self.loss).__name__}  {where}'


def _default_name(loss: nn.Module) -> str:
    name = getattr(loss, 'name', None)
    if isinstance(name, str) and name:
        return name
    name = type(loss).__name__.lower()
    return name[:-4] if name.endswith('loss') and len(name) > 4 else name


def _parse_outputs(outputs, index: int):
    if outputs == LOGITS:
        return None, None
    if isinstance(outputs, str):
        return outputs, outputs
    if (isinstance(outputs, Sequence) and len(outputs) == 2
            and all(isinstance(o, str) for o in outputs)):
        return outputs[0], outputs[1]
    raise ValueError(
        f'`outputs` of distill_losses[{index}] should be {LOGITS!r}, a '
        'module name, or a pair (student module, teacher module), but '
        f'got {outputs!r}')


def build_terms(cfgs: Sequence[dict]) -> List[DistillTerm]:
    """Build the distillation terms of a config.

    Each item is the config of a loss in ``DISTILL_LOSSES`` plus keys
    of its own: ``outputs``, ``'logits'`` (the default) or the name of a
    module in both models or a pair ``(student module, teacher module)``;
    an optional ``name``; and an optional ``weight_schedule``, the
    arguments of a :class:`WeightSchedule` (e.g. ``dict(end=100,
    ramp='linear')``: the term's weight falls from 1 to 0 over the first
    100 iterations). Logits terms are logged as ``loss_<name>``
    (``loss_kd`` by default), feature terms as ``loss_feat_<name>``, where
    ``name`` defaults to the student module with dots as underscores.

    Args:
        cfgs (Sequence[dict]): Configs of the terms.

    Returns:
        list[DistillTerm]: The terms, in config order.

    Raises:
        TypeError: If ``cfgs`` is not a list of dicts.
        ValueError: If ``outputs`` is malformed or two terms share a name.

    Examples:
        >>> build_terms([
        ...     dict(type='KDLoss', tau=4.0),
        ...     dict(type='MSELoss', outputs='backbone.layer4'),
        ... ])
    """
    if isinstance(cfgs, (str, dict)) or not isinstance(cfgs, Sequence):
        raise TypeError('`distill_losses` should be a list of dicts, but '
                        f'got {type(cfgs).__name__}')
    terms: List[DistillTerm] = []
    for index, cfg in enumerate(cfgs):
        if not isinstance(cfg, dict):
            raise TypeError(f'distill_losses[{index}] should be a dict, but '
                            f'got {type(cfg).__name__}')
        cfg = dict(cfg)
        student, teacher = _parse_outputs(cfg.pop('outputs', LOGITS), index)
        name = cfg.pop('name', None)
        schedule = cfg.pop('weight_schedule', None)
        if schedule is not None:
            if not isinstance(schedule, dict):
                raise TypeError(
                    f'`weight_schedule` of distill_losses[{index}] should '
                    f'be a dict, but got {type(schedule).__name__}')
            schedule = WeightSchedule(**schedule)
        loss = build_own(DISTILL_LOSSES, cfg)
        if student is None:
            key = f'loss_{name or _default_name(loss)}'
        else:
            key = f"loss_feat_{name or student.replace('.', '_')}"
        if any(term.key == key for term in terms):
            raise ValueError(
                f'distill_losses[{index}] would be logged as `{key}` like '
                'an earlier term; give it a different `name`')
        terms.append(DistillTerm(key, student, teacher, loss, schedule))
    return terms
