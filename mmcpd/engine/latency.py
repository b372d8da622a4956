"""What a prune session is given to steer by latency: the latency table
and the closed loop's meter, measured on rank 0 only.

A :class:`~mmcpd.prune.session.PruneSession` imports no runtime: these
functions build what it needs from :mod:`mmcpd.deploy` (onnxruntime) for
``CPDHook`` and ``mmcpd.prune_model`` alike.
"""
import os.path as osp
from typing import Callable, Optional, Union

import torch
from torch import nn

from mmcpd.deploy.latency_table import is_table, table_for
from mmcpd.deploy.meter import check_onnxruntime, meter_for
from mmcpd.prune.session import PruneSession, Sync
from mmcpd.prune.settings import PruneSettings
from mmcpd.utils.module import Forward, cpu_copy


#: Example inputs, or what makes them when (and only where) they are needed:
#: drawing random inputs on every rank, or when nothing is measured, would
#: move the global random stream that dropout and drop-path draw from.
Inputs = Union[torch.Tensor, Callable[[], torch.Tensor]]


def _tensor(inputs: Inputs) -> torch.Tensor:
    return inputs if isinstance(inputs, torch.Tensor) else inputs()


def latency_table_for(settings: PruneSettings, model: nn.Module,
                      inputs: Inputs,
                      sync: Optional[Sync] = None,
                      forward: Forward = None) -> Optional[dict]:
    """The model's latency table if ``settings`` need one (given, cached
    or measured on a CPU copy at ``inputs``' shape, deployed through
    ``forward``), measured by rank 0 alone (one machine's numbers, timed
    without rivals) and sent to the others; None if not needed."""
    if not settings.needs_table:
        return None
    if is_table(settings.latency_table):
        return settings.latency_table
    sync = sync or Sync()
    table = None
    if sync.is_main():
        table = table_for(
            cpu_copy(model), _tensor(inputs).detach().cpu(),
            settings.latency_table, forward=forward)
    return sync.broadcast(table)


def closed_loop_meter(session: PruneSession,
                      inputs: Inputs,
                      reference_onnx: Optional[str] = None,
                      warn: Callable[[str], None] = print,
                      what: str = '`closed_loop`',
                      forward: Forward = None
                      ) -> Optional[Callable[[nn.Module], float]]:
    """The ``measure`` of the session's closed loop, on rank 0 (None on the
    other ranks and without a loop): the unpruned model exported once
    (kept in ``reference_onnx``, read back on resume) and timed against the
    candidates in onnxruntime at ``inputs``, both exported through
    ``forward``, or ``closed_loop['measure']``.
    """
    loop = session.settings.loop
    if loop is None or not session.sync.is_main():
        return None
    meter_kw = loop[1]
    if 'measure' not in meter_kw:
        check_onnxruntime(what)
    reference = None if session.removed else session.model
    if reference is None and 'measure' not in meter_kw and (
            reference_onnx is None or not osp.exists(reference_onnx)):
        warn(f'{reference_onnx} (the unpruned model, for the closed '
             'latency loop) is missing on resume: the remaining steps stop '
             'at the predicted latency')
        return None
    table = dict(machine=getattr(session.pruner.cost, 'machine', {}))
    return meter_for(reference, _tensor(inputs), meter_kw,
                     table, reference_onnx=reference_onnx, forward=forward)
