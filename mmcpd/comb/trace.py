"""Run the model once and label its channels.

The tracer is a :class:`~torch.overrides.TorchFunctionMode`: it sees every
torch function the forward calls, whatever Python control flow leads there,
and hands each call to the handler registered for it. Forward hooks on the
modules tell which module made each call. Data that leaves torch or comes
from where the tracer cannot see (numpy, ``.item()``, C++ extension ops) is
caught by :class:`~mmcpd.comb.opaque.Provenance`, except where a module
(:mod:`~mmcpd.comb.module_rules`: mmcv's RoIAlign) or a function
(:mod:`~mmcpd.comb.stand_ins`: mmcv's deformable attention) whose channel
flow is known has a rule of its own.
"""
import contextlib
from collections import Counter
from typing import Any, Callable, Iterator, List, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from mmcpd.comb.flops import count_flops
from mmcpd.comb.handlers import COUNTED, HANDLERS, OpContext, handle_unknown
from mmcpd.comb.handlers.shape import read_shape_data
from mmcpd.comb.labels import LabelGraph
from mmcpd.comb.liveness import Liveness
from mmcpd.comb.module_attrs import record_width_attrs
from mmcpd.comb.module_rules import module_rule
from mmcpd.comb.opaque import Provenance, flat_tensors
from mmcpd.comb.stand_ins import stand_ins
from mmcpd.comb.sizes import (SHAPED, SIZED, attribute_ints, sym_args,
                              symbolic_shape, untracked)
from mmcpd.comb.tensor_mode import tensor_forward

#: The graphs of the traces running now (innermost last).
_ACTIVE: List[LabelGraph] = []


class TraceError(RuntimeError):
    """The model could not run on the example inputs."""


def _has_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


def op_name(func) -> str:
    name = getattr(func, '__name__', None) or str(func)
    if name == '__get__':
        name = getattr(getattr(func, '__self__', None), '__name__', name)
    return name


_SETITEM = {torch.Tensor.__setitem__}


class _Recorder(TorchFunctionMode):

    def __init__(self, graph: LabelGraph, stack: List[Tuple[str, Any]],
                 calls: List[Counter], watch: Provenance,
                 flow: Liveness, ruled: List[int]):
        super().__init__()
        #: ``[n]``: inside ``n`` calls of modules with a rule of their own
        #: (:mod:`mmcpd.comb.module_rules`), whose ops are not handled
        self.ruled = ruled
        #: the op that raised, for the TraceError ('' while none)
        self.failed = ''
        self.graph = graph
        self.stack = stack
        self.calls = calls
        self.watch = watch
        self.flow = flow

    def _labelled(self, value) -> bool:
        graph = self.graph
        if isinstance(value, torch.Tensor):
            return value in graph._labels or value in graph.leaf_names
        if isinstance(value, (list, tuple)):
            return any(self._labelled(v) for v in value)
        return False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        scope, module = self.stack[-1]
        name = op_name(func)
        self.watch.before(name, scope, args, kwargs)
        try:
            out = func(*args, **kwargs)
        except Exception:
            self.failed = self.failed or f'op `{name}` '
            raise
        if self.ruled[0]:  # the module's rule labels what it returns
            self.graph.current_op = self.flow.op(func, name, args, kwargs,
                                                 out)
            self.watch.after(func, name, scope, args, kwargs, out)
            self.graph.current_op = None
            return out
        where = f'`{name}` in `{scope or "model"}`'
        if self.graph.shape_data:
            read_shape_data(self.graph, func, name, args, kwargs, where)
        out = symbolic_shape(self.graph, func, args, out, where)
        self.graph.current_op = self.flow.op(func, name, args, kwargs, out)
        index = 0
        try:
            if func in COUNTED:  # mixing ops: the masked model counts too
                index = self.calls[-1][name]
                self.calls[-1][name] += 1
            handler = HANDLERS.get(func, handle_unknown)
            sized = func in SIZED  # its handler ties computed sizes
        except TypeError:  # unhashable callable
            handler, sized = handle_unknown, False
        if (_has_tensor(out) or func in _SETITEM) and (
                self._labelled(args) or self._labelled(list(
                    kwargs.values()))):
            self._handle(handler, func, args, kwargs, out, scope, module,
                         name, index)
            labelled = True
        else:
            sized = labelled = False
        syms = sym_args((args, kwargs))
        if syms and not sized and name not in SHAPED:
            if not labelled and _has_tensor(args):  # DETR's pos. embedding
                where += (' sizes a tensor without channels (a positional '
                          'embedding or another constant, which cannot '
                          'follow the width) and')
            untracked(self.graph, syms, where)
        self.watch.after(func, name, scope, args, kwargs, out)
        self.graph.current_op = None
        return out

    def _handle(self, handler, func, args, kwargs, out, scope, module, name,
                index):
        ctx = OpContext(self.graph, func, args, kwargs, out, scope, module,
                        name, index)
        try:
            handler(ctx)
        except Exception as e:  # a handler bug must not give a wrong model
            reason = (f'handler of `{ctx.name}` failed in '
                      f'`{scope or "model"}` ({type(e).__name__}: {e})')
            self.graph.warnings.append(reason)
            ctx.freeze_inputs(reason)
            ctx.frozen_output(reason)
        count_flops(ctx)


@contextlib.contextmanager
def not_deployed() -> Iterator[None]:
    """Trace what runs inside (its channels are tied as usual) without
    counting its FLOPs: for parts of a forward that the deployed model does
    not run, such as auxiliary heads."""
    graph = _ACTIVE[-1] if _ACTIVE else None
    before = graph.counting if graph is not None else None
    if graph is not None:
        graph.counting = False
    try:
        yield
    finally:
        if graph is not None:
            graph.counting = before


def _cascade_forward(model: nn.Module, inputs: torch.Tensor) -> list:
    """A segmentor's logits, after those of every earlier stage of a
    cascade (OCRNet's FCN head): each stage's logits meet the labels in a
    loss of their own, so their classes are outputs too."""
    heads = model.decode_head
    stages = list(heads[:-1]) if isinstance(heads, nn.ModuleList) else []
    found = []

    def capture(forward):  # mmseg calls ``head.forward(x)``: no hooks

        def wrapped(*args, **kwargs):
            out = forward(*args, **kwargs)
            found.append(out)
            return out

        return wrapped

    own = [vars(head).get('forward') for head in stages]
    for head in stages:
        head.forward = capture(head.forward)
    try:
        out = model._forward(inputs)
    finally:
        for head, forward in zip(stages, own):
            if forward is None:
                del head.forward
            else:
                head.forward = forward
    return found + [out]


def default_forward(model: nn.Module, inputs: torch.Tensor) -> Any:
    """The OpenMMLab tensor-mode forward, with auxiliary heads.

    Classifiers return their head's logits (``mode='tensor'``). Segmentors
    return the decode head's logits (those of every stage of a cascade)
    and every auxiliary head's, so the channels feeding an auxiliary head
    are pruned with it too; the
    auxiliary heads (dropped at inference) and the second feature pass that
    feeds them are traced :func:`not_deployed`, so the FLOPs are those of
    the deployed forward. MMDetection's detectors get data samples made
    from the input's shape (:func:`~mmcpd.comb.tensor_mode.tensor_forward`)
    and return their heads' raw outputs (a two-stage detector: its RPN
    head's, and its RoI head's on fixed proposals,
    :mod:`mmcpd.comb.two_stage`).
    """
    if hasattr(model, 'decode_head') and hasattr(model, 'extract_feat'):
        outs = _cascade_forward(model, inputs)
        aux = getattr(model, 'auxiliary_head', None)
        if aux is not None:
            with not_deployed():
                feats = model.extract_feat(inputs)
                heads = aux if isinstance(aux, nn.ModuleList) else [aux]
                outs += [head.forward(feats) for head in heads]
        return outs
    try:
        from mmengine.model import BaseModel
    except ImportError:  # pragma: no cover
        BaseModel = ()
    if isinstance(model, BaseModel):
        return tensor_forward(model, inputs)
    return model(inputs)


def trace(model: nn.Module,
          inputs: Any,
          forward_fn: Callable = default_forward) -> Tuple[LabelGraph, Any]:
    """Label the channels of ``model`` by running ``forward_fn`` once.

    Returns:
        tuple: The label graph and the forward's output.

    Raises:
        TraceError: The forward failed; the message names the module that
            was running.
    """
    graph = LabelGraph()
    if isinstance(inputs, torch.Tensor) and inputs.dim() > 0:
        graph.batch = int(inputs.shape[0])
    for name, p in model.named_parameters():
        graph.register_leaf(p, name)
    for name, b in model.named_buffers():
        if b.is_floating_point():
            graph.register_leaf(b, name)
    for module in model.modules():  # kernel dims are positions, not channels
        if isinstance(module, nn.modules.conv._ConvNd):
            name = graph.leaf_name(module._parameters.get('weight'))
            if name is not None:
                graph.kernel_dims[name] = 2
    stack: List[Tuple[str, Any]] = [('', model)]
    calls: List[Counter] = [Counter()]
    ruled = [0]
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        rule = module_rule(module)

        def pre(mod, args, name=name, rule=rule):
            stack.append((name, mod))
            calls.append(Counter())
            watch.enter(name, args)
            ruled[0] += rule is not None

        def post(mod, args, output, name=name, rule=rule):
            if rule is not None:
                ruled[0] -= 1
                if not ruled[0]:
                    with torch._C.DisableTorchFunction():
                        rule(graph, name, mod, args, output)
                    watch.traced(output)
            record_width_attrs(graph, name, mod, args, output)
            stack.pop()
            calls.pop()
            watch.leave(output)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    was_training = model.training
    model.eval()
    # after eval(): some modules cache tensors there (LeViT's biases)
    watch = Provenance(graph, model, inputs)
    flow = Liveness(model, inputs)
    _ACTIVE.append(graph)
    recorder = _Recorder(graph, stack, calls, watch, flow, ruled)
    try:
        with torch.no_grad(), attribute_ints(model, graph.attr_math), \
                stand_ins(), recorder:
            # again, traced: tensors that ``train(False)`` caches from
            # parameters (TinyViT's and LeViT's attention biases) follow
            # them; the pruner refreshes them the same way
            graph.counting = False
            model.train(False)
            graph.counting = True
            out = forward_fn(model, inputs)
    except Exception as e:
        where = stack[-1][0] or type(model).__name__
        raise TraceError(
            f'the model could not run on the example inputs: '
            f'{type(e).__name__} in {recorder.failed}in module `{where}` '
            f'({type(stack[-1][1]).__name__}): {e}; to comb another '
            f'forward, pass `forward_fn(model, inputs)` (CPDHook: '
            f'`forward=`)') from e
    finally:
        _ACTIVE.remove(graph)
        for h in handles:
            h.remove()
        model.train(was_training)
    for t in flat_tensors(out):
        for block in graph.get(t):
            graph.freeze(block.ids, 'model output')
    # what no output needs costs nothing (mmengine's JIT trace drops it)
    if watch.unseen:
        flow.outputs_unknown(watch.unseen)
    live = flow.live(out)
    if live is not None:
        graph.dead = graph.drop_dead(live)
    return graph, out
