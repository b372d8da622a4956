"""DistillWrapper: a student trained against a frozen teacher."""
import copy
import importlib
import importlib.util
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import ConfigDict
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

from mmcpd.comb.mmdet_kind import is_mmdet
from mmcpd.comb.tensor_mode import tensor_forward
from mmcpd.distill.connector import (ChannelScatter, Connector,
                                     build_connector)
from mmcpd.distill.recorder import (as_tensor, check_module_names,
                                    record_outputs)
from mmcpd.distill.schedule import current_iteration
from mmcpd.distill.term import DistillTerm, build_terms
from mmcpd.registry import MODELS

ModelType = Union[dict, nn.Module]


def _is_dense_head(module: object) -> bool:
    """Whether ``module`` is an MMDetection dense head (``BaseDenseHead``:
    RetinaNet, FCOS, ATSS, GFL, RTMDet, YOLOX, SSD, CenterNet ...)."""
    return is_mmdet(module, 'BaseDenseHead')


def _logits_module(model: nn.Module, role: str) -> str:
    """Name of the submodule whose output is the task's logits.

    MMSeg segmentors: the decode head's ``conv_seg`` (seg logits, before
    resizing). MMPretrain classifiers: the ``head`` (cls scores, before
    softmax). MMDetection single-stage detectors: the dense ``bbox_head``,
    whose first output is the class score map of every FPN level, before
    the sigmoid (:func:`logits_of`).
    """
    decode_head = getattr(model, 'decode_head', None)
    if isinstance(getattr(decode_head, 'conv_seg', None), nn.Module):
        return 'decode_head.conv_seg'
    if _is_dense_head(getattr(model, 'bbox_head', None)):
        return 'bbox_head'
    if isinstance(getattr(model, 'head', None), nn.Module):
        return 'head'
    raise TypeError(
        'logits are distilled from MMPretrain classifiers (a `head`), '
        'MMSeg segmentors (a `decode_head`) and single-stage MMDetection '
        'detectors (a dense `bbox_head`), but the '
        f'{role} is a {type(model).__name__}; distil named features '
        'instead (`outputs=` of the loss)')


def logits_of(output: object, name: str, role: str) -> List[torch.Tensor]:
    """The logits in the recorded ``output`` of the logits module ``name``:
    one tensor, or for a dense detection head (``bbox_head``) its class
    score maps, one per FPN level (its first output)."""
    if name == 'bbox_head':
        levels = output[0] if isinstance(output, (tuple, list)) and \
            output else None
        if not isinstance(levels, (tuple, list)) or not levels or not all(
                isinstance(x, torch.Tensor) and x.dim() == 4
                for x in levels):
            raise TypeError(
                f'the {role}\'s `bbox_head` should return the class score '
                'maps of its levels first (a list of (N, C, H, W) tensors), '
                f'as MMDetection\'s dense heads do, but got '
                f'{type(levels).__name__}; distil named features instead')
        return list(levels)
    return [as_tensor(output, name, role)]


def _teacher_tensor_mode(teacher: nn.Module, inputs: torch.Tensor,
                         data_samples: Optional[list]) -> object:
    """The teacher's tensor mode, with its modules' hooks firing: a
    single-stage detector's ``_forward`` calls ``bbox_head.forward``
    directly, which hooks on the head do not see, so the head is called
    as a module here (the same computation)."""
    if _is_dense_head(getattr(teacher, 'bbox_head', None)) and hasattr(
            teacher, 'extract_feat'):
        return teacher.bbox_head(teacher.extract_feat(inputs))
    return teacher(inputs, data_samples, mode='tensor')


def _num_logits(model: nn.Module, name: str) -> Optional[int]:
    module = model.get_submodule(name)
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    num = getattr(module, 'num_classes', None)
    return num if isinstance(num, int) else None


def _package_scope(model_type) -> Optional[str]:
    """The OpenMMLab package that a scoped ``type`` names, if it has a
    model registry: ``'mmpretrain'`` for ``'mmpretrain.ImageClassifier'``;
    None for unscoped names, import paths of packages without a registry of
    their own (``'mmcpd.DistillWrapper'``) and classes."""
    if not isinstance(model_type, str) or '.' not in model_type:
        return None
    scope = MODELS.split_scope_key(model_type)[0]
    if scope not in MODELS.children:
        try:
            spec = importlib.util.find_spec(f'{scope}.registry')
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return None
        importlib.import_module(f'{scope}.registry')
    return scope if scope in MODELS.children else None


def _build(model: ModelType, role: str) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, dict):
        # ConfigDict: MMSeg reads e.g. ``test_cfg.mode`` as attributes.
        cfg = ConfigDict(copy.deepcopy(model))
        # A scoped type (``mmpretrain.ImageClassifier``) is built in its
        # package's scope, so that the modules it builds inside (data
        # pre-processor, backbone, head: unscoped names) resolve there too,
        # whatever default scope is current (none, or the ``mmengine`` one
        # that any plain Runner leaves behind).
        scope = _package_scope(cfg.get('type'))
        if scope is not None:
            cfg.setdefault('_scope_', scope)
        return MODELS.build(cfg)
    raise TypeError(f'`{role}` should be a config dict or an nn.Module, '
                    f'but got {type(model).__name__}')


def _load_teacher(teacher: nn.Module, path: str) -> None:
    """Load a checkpoint into the teacher: plain, pruned (the teacher is
    resized to its spec), DistillWrapper (its student) or CPDHook training
    checkpoint (its student, cut to the deploy model); the same loader as
    :func:`mmcpd.apis.init_model`."""
    from mmcpd.models.loading import load_pruned_checkpoint
    from mmcpd.utils.checkpoint import mmengine_safe_globals
    if '://' in path:
        with mmengine_safe_globals():
            ckpt = _load_checkpoint(path, map_location='cpu')
        if not isinstance(ckpt, dict):
            raise ValueError(f'`teacher_checkpoint` {path!r} should hold a '
                             f'dict, but holds a {type(ckpt).__name__}')
    elif not osp.isfile(path):
        raise FileNotFoundError(
            f'`teacher_checkpoint` {path!r} does not exist')
    else:
        ckpt = path
    load_pruned_checkpoint(teacher, ckpt, '<teacher>', path)


@MODELS.register_module()
class DistillWrapper(BaseModel):
    """Train a student with distillation from a frozen teacher.

    The teacher is, by default, the student itself as loaded: a copy of
    the student's weights taken at the first training step, after the
    runner has loaded ``load_from`` (the unpruned model, as in CPD). A
    persistent buffer records the copy, so a resumed run keeps the
    teacher of its checkpoint. Or the teacher is another model (a larger
    one of the same family) loaded from ``teacher_checkpoint``.

    The teacher runs in eval mode under ``no_grad``, never requires
    gradients (so the optimizer never updates it), is never initialised
    by the runner, and sees the student's pre-processed inputs. Built by
    the :class:`~mmcpd.engine.cpd_runner.CPDRunner` (the CPD base
    configs' ``runner_type``), its parameters are not in the optimizer at
    all. With ``train_teacher=True`` the teacher is instead fine-tuned
    alongside the student on its own task losses (``teacher_loss...``
    entries), in the student's train/eval mode and in the optimizer; the
    distillation terms see its outputs detached, so no gradient flows from
    the student's terms into it.
    ``mode='loss'`` returns the student's task losses (unless
    ``keep_task_loss=False``) and one entry per distillation term
    (``loss_kd``, ``loss_cwd``, ``loss_feat_<name>``, ...); ``predict``
    and ``tensor`` run the student alone, so testing, metrics and export
    see the plain model. :func:`unwrap_student` returns the student to
    prune or deploy; the teacher and connectors are not part of it.

    A checkpoint of the plain student (``load_from``) loads into the
    wrapper as it is: keys without the ``student.`` prefix are taken as the
    student's.

    Args:
        student (dict | nn.Module): The model to train (and prune). A
            config whose ``type`` names its package
            (``'mmpretrain.ImageClassifier'``) is built in that package's
            scope, in a runner or not.
        teacher (dict | nn.Module, optional): The teacher. None builds one
            like the student. A dict needs ``teacher_checkpoint``.
            Defaults to None.
        teacher_checkpoint (str, optional): Checkpoint of the teacher,
            loaded at construction; a DistillWrapper checkpoint gives its
            student. None with ``teacher=None`` copies the student at the
            first training step. Defaults to None.
        distill_losses (list[dict], optional): The distillation terms:
            each a loss config from ``DISTILL_LOSSES`` with ``outputs``
            (``'logits'``, the default, or a module name, or a pair
            ``(student module, teacher module)`` for features) and an
            optional ``name``. None means ``[dict(type='KDLoss')]``.
        keep_task_loss (bool): Whether to keep the student's own losses.
            Defaults to True.
        train_teacher (bool): Fine-tune the teacher alongside the student
            on its task losses instead of freezing it. Defaults to False.
        probe_shape (Sequence[int]): Shape (C, H, W) of a zero image run
            once through both models at construction to measure the
            widths of distilled features; used only for feature terms.
            Where widths differ, a connector (1x1 conv or linear) maps the
            student's to the teacher's. Defaults to (3, 224, 224).
        data_preprocessor (dict | nn.Module, optional): Pre-processor of
            the wrapper. None uses the student's. Defaults to None.
        init_cfg (dict, optional): Unused; for the BaseModel signature.

    Examples:
        >>> model = dict(
        ...     type='DistillWrapper',
        ...     student=dict(type='mmseg.EncoderDecoder', ...),
        ...     distill_losses=[dict(type='CWDLoss', tau=4.0,
        ...                          loss_weight=3.0)])
    """

    def __init__(self,
                 student: ModelType,
                 teacher: Optional[ModelType] = None,
                 teacher_checkpoint: Optional[str] = None,
                 distill_losses: Optional[Sequence[dict]] = None,
                 keep_task_loss: bool = True,
                 train_teacher: bool = False,
                 probe_shape: Sequence[int] = (3, 224, 224),
                 data_preprocessor: Optional[ModelType] = None,
                 init_cfg: Optional[dict] = None) -> None:
        for name, value in (('keep_task_loss', keep_task_loss),
                            ('train_teacher', train_teacher)):
            if not isinstance(value, bool):
                raise TypeError(f'`{name}` should be a bool, but got '
                                f'{type(value).__name__}')
        if isinstance(teacher, dict) and teacher_checkpoint is None:
            raise ValueError(
                'a `teacher` config needs a `teacher_checkpoint`, or the '
                'teacher would distil random weights')
        if teacher_checkpoint is not None and not isinstance(
                teacher_checkpoint, str):
            raise TypeError('`teacher_checkpoint` should be a str, but got '
                            f'{type(teacher_checkpoint).__name__}')
        student_model = _build(student, 'student')
        if data_preprocessor is None:
            data_preprocessor = getattr(student_model, 'data_preprocessor',
                                        None)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = student_model
        # The default teacher: the student as loaded, copied at step one.
        self._copy_from_student = (
            teacher is None and teacher_checkpoint is None)
        if teacher is None:
            teacher = (
                copy.deepcopy(self.student)
                if isinstance(student, nn.Module) else student)
        self.teacher = _build(teacher, 'teacher')
        if teacher_checkpoint is not None:
            _load_teacher(self.teacher, teacher_checkpoint)
        self.train_teacher = train_teacher
        self.teacher.requires_grad_(train_teacher)
        self.teacher.eval()
        self.teacher._is_init = True
        self.register_buffer('_teacher_copied', torch.tensor(False))
        self.keep_task_loss = keep_task_loss

        if distill_losses is None:
            distill_losses = [dict(type='KDLoss')]
        self.terms: List[DistillTerm] = build_terms(distill_losses)
        if not self.terms:
            raise ValueError('`distill_losses` should name at least one '
                             'loss, but got an empty list')
        self.distill_losses = nn.ModuleDict(
            {term.key: term.loss
             for term in self.terms})
        self._logits = self._check_logits(teacher_checkpoint or 'teacher')
        self.connectors = nn.ModuleDict()
        self.probe_shape = tuple(probe_shape)
        self._build_connectors(probe_shape)
        self.register_load_state_dict_pre_hook(self._adopt_plain_student)

    def _check_logits(self, teacher_name: str) -> Optional[tuple]:
        """Names of the logits modules; check that class counts agree."""
        if not any(term.on_logits for term in self.terms):
            return None
        names = (_logits_module(self.student, 'student'),
                 _logits_module(self.teacher, 'teacher'))
        num_s = _num_logits(self.student, names[0])
        num_t = _num_logits(self.teacher, names[1])
        if num_s is not None and num_t is not None and num_s != num_t:
            raise ValueError(
                f'the teacher ({teacher_name}) predicts {num_t} classes but '
                f'the student {num_s}; logits can only be distilled '
                'between models of the same classes')
        return names

    def _build_connectors(self, probe_shape: Sequence[int]) -> None:
        features = [term for term in self.terms if not term.on_logits]
        if not features:
            return
        check_module_names(self.student, [t.student for t in features],
                           'student')
        check_module_names(self.teacher, [t.teacher for t in features],
                           'teacher')
        if (not isinstance(probe_shape, Sequence) or len(probe_shape) != 3
                or not all(isinstance(s, int) and s > 0 for s in probe_shape)):
            raise ValueError('`probe_shape` should be (C, H, W) of positive '
                             f'ints, but got {probe_shape!r}')
        shapes = {}
        for role, model in (('student', self.student), ('teacher',
                                                        self.teacher)):
            names = [getattr(term, role) for term in features]
            param = next(model.parameters(), None)
            x = torch.zeros(
                1, *probe_shape, device=getattr(param, 'device', None))
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad(), record_outputs(model, names) as out:
                    tensor_forward(model, x)
            finally:
                model.train(was_training)
            shapes[role] = {
                name: as_tensor(out[name], name, role).shape
                for name in names
            }
        for term in features:
            connector = build_connector(shapes['student'][term.student],
                                        shapes['teacher'][term.teacher])
            if connector is not None:
                self.connectors[term.key] = connector

    def feature_modules(self) -> Dict[str, str]:
        """The student module of each feature term, by term key."""
        return {t.key: t.student for t in self.terms if not t.on_logits}

    @torch.no_grad()
    def follow_student(self, kept: Dict[str, tuple]) -> dict:
        """Resize the connectors after the student was cut physically.

        Args:
            kept (dict[str, tuple]): Per student module whose output lost
                channels: ``(kept channel indices, channels before, feature
                dimensions)``.

        Returns:
            dict: ``{old parameter: (new parameter, {dim: kept indices})}``
            of the sliced connector weights, for the optimizer to follow.
            A learned connector loses the input columns of the removed
            channels (they were zero); where the widths agreed, a
            :class:`~mmcpd.distill.connector.ChannelScatter` puts the kept
            channels back in place, so the loss is what the masked student
            gives.
        """
        replaced = {}
        for key, name in self.feature_modules().items():
            if name not in kept:
                continue
            index, channels, ndim = kept[name]
            connector = self.connectors[key] if key in self.connectors \
                else None
            if connector is None:
                param = next(self.student.parameters())
                self.connectors[key] = ChannelScatter(
                    index, channels, ndim).to(param.device)
            elif isinstance(connector, ChannelScatter):
                connector.narrow(index)
            elif isinstance(connector, Connector):
                old = connector.proj.weight
                keep = index.to(old.device)
                new = nn.Parameter(old.index_select(1, keep).clone(),
                                   requires_grad=old.requires_grad)
                if old.grad is not None:
                    new.grad = old.grad.index_select(1, keep).clone()
                connector.proj.weight = new
                connector.in_channels = int(keep.numel())
                if isinstance(connector.proj, nn.Conv2d):
                    connector.proj.in_channels = connector.in_channels
                else:
                    connector.proj.in_features = connector.in_channels
                replaced[old] = (new, {1: keep})
        return replaced

    def _adopt_plain_student(self, module, state_dict, prefix, *args):
        """Load-state-dict pre-hook: take plain keys as the student's."""
        if any(k.startswith(prefix + 'student.') for k in state_dict):
            return
        student_keys = set(self.student.state_dict())
        plain = [
            k for k in list(state_dict)
            if k.startswith(prefix) and k[len(prefix):] in student_keys
        ]
        if not plain:
            return
        own = {prefix + k: v for k, v in self.state_dict().items()}
        for key in plain:
            value = state_dict[key] if key in own else state_dict.pop(key)
            state_dict[prefix + 'student.' + key[len(prefix):]] = value
        # The checkpoint has no teacher or connectors: keep the current
        # ones (the default teacher is copied at the first step anyway).
        for key, value in own.items():
            state_dict.setdefault(key, value)

    def init_weights(self) -> None:
        """Initialise the student only; the teacher is never initialised."""
        if hasattr(self.student, 'init_weights'):
            self.student.init_weights()
        self._is_init = True

    def train(self, mode: bool = True) -> 'DistillWrapper':
        """Set the mode of the student; the teacher stays in eval mode
        unless it is trained alongside."""
        super().train(mode)
        if not self.train_teacher:
            self.teacher.eval()
        return self

    def _sources(self, role: str) -> List[str]:
        """Module recorded for each term in the student or teacher."""
        logits = self._logits[role == 'teacher'] if self._logits else None
        return [
            logits if term.on_logits else getattr(term, role)
            for term in self.terms
        ]

    @torch.no_grad()
    def _copy_teacher_once(self) -> None:
        if not self._copy_from_student or bool(self._teacher_copied):
            return
        try:
            self.teacher.load_state_dict(self.student.state_dict())
        except RuntimeError as err:
            raise RuntimeError(
                'cannot copy the student into the teacher: the student no '
                'longer has the architecture it was built with (was it '
                'pruned before training started? then give a '
                '`teacher_checkpoint`)') from err
        self._teacher_copied.fill_(True)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        """Task losses plus distillation in ``loss`` mode, else the student.

        Args:
            inputs (Tensor): Pre-processed inputs.
            data_samples (list, optional): Data samples of the batch.
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.
                Defaults to ``'tensor'``.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode in ('predict', 'tensor'):
            return self.student(inputs, data_samples, mode=mode)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, '
                           'predict and tensor mode')

    def _student_losses(self, inputs: torch.Tensor,
                        data_samples: Optional[list]) -> dict:
        """The student's task losses, or none (its forward only) without
        ``keep_task_loss``."""
        if not self.keep_task_loss:
            self.student(inputs, data_samples, mode='tensor')
            return {}
        # mmpretrain heads return {'loss': ...}: renamed, or it would
        # overwrite the total that `parse_losses` logs as `loss`.
        return {
            'loss_task' if k == 'loss' else k: v
            for k, v in self.student(inputs, data_samples,
                                     mode='loss').items()
        }

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[list]) -> Dict[str, torch.Tensor]:
        """The student's task losses and the distillation terms, each
        times its weight schedule's factor at the runner's iteration; the
        teacher does not run while every factor is 0 and the task loss is
        kept (the terms are then logged as 0)."""
        self._copy_teacher_once()
        iteration = current_iteration()
        factors = [term.factor(iteration) for term in self.terms]
        if self.keep_task_loss and not any(factors):
            losses = self._student_losses(inputs, data_samples)
            zero = inputs.new_zeros(())
            losses.update((term.key, zero) for term in self.terms)
            return losses
        names = {role: self._sources(role) for role in ('student', 'teacher')}
        with record_outputs(self.student, names['student']) as s_out:
            losses = self._student_losses(inputs, data_samples)
        if self.train_teacher:  # fine-tuned alongside, on its own losses
            with record_outputs(self.teacher, names['teacher']) as t_out:
                for key, value in self.teacher(inputs, data_samples,
                                               mode='loss').items():
                    losses[f'teacher_{key}'] = value
        else:
            with torch.no_grad(), record_outputs(
                    self.teacher, names['teacher']) as t_out:
                _teacher_tensor_mode(self.teacher, inputs, data_samples)
        for term, factor, s_name, t_name in zip(self.terms, factors,
                                                names['student'],
                                                names['teacher']):
            if term.key in losses:
                raise KeyError(f'the student already returns a loss named '
                               f'`{term.key}`; rename the distillation term '
                               'with `name`')
            loss = self._term_loss(term, s_out[s_name], t_out[t_name],
                                   s_name, t_name)
            losses[term.key] = loss if factor == 1 else loss * factor
        return losses

    def _term_loss(self, term: DistillTerm, s_out: object, t_out: object,
                   s_name: str, t_name: str) -> torch.Tensor:
        """A term's loss between the recorded outputs: on logits, the mean
        over what :func:`logits_of` gives (a detector's levels, each
        weighted alike, as CWD's detection experiments distil each FPN
        level); on features, through the term's connector."""
        if term.on_logits:
            pairs = list(
                zip(logits_of(s_out, s_name, 'student'),
                    logits_of(t_out, t_name, 'teacher')))
            return sum(term.loss(s, t.detach())
                       for s, t in pairs) / len(pairs)
        s = as_tensor(s_out, s_name, 'student')
        t = as_tensor(t_out, t_name, 'teacher').detach()
        if term.key in self.connectors:
            s = self.connectors[term.key](s)
        return term.loss(s, t)


def unwrap_student(model: nn.Module) -> nn.Module:
    """The model to prune: the student of a DistillWrapper, or the model.

    Model wrappers such as (MM)DistributedDataParallel are looked through
    (``.module``).

    Args:
        model (nn.Module): A plain model or a DistillWrapper, either
            possibly inside a model wrapper.

    Returns:
        nn.Module: The plain model or the wrapper's student.
    """
    while is_model_wrapper(model):
        model = model.module
    if isinstance(model, DistillWrapper):
        return model.student
    return model
