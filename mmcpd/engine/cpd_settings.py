"""The ``cpd`` settings field of a config, turned into a CPDHook.

mmengine merges dicts on inheritance but replaces lists, so the CPD base
configs do not put the hook in ``custom_hooks`` (a child would have to
restate all of it, and a zoo config with hooks of its own, such as
ConvNeXt's ``EMAHook``, could not inherit both: mmengine refuses a key that
two bases define). They set a dict field instead::

    cpd = dict(interval=100, target=0.5, metric='flops', round_to=8, ...)

and a child config changes one key with ``cpd = dict(target=0.7)``. The
:class:`~mmcpd.engine.cpd_runner.CPDRunner` appends
``dict(type='mmcpd.engine.hooks.CPDHook', **cpd)`` to ``custom_hooks``,
whatever the config had there. The keys are the arguments of
:class:`~mmcpd.engine.hooks.CPDHook`; ``input_shape=None`` (the bases' default)
takes the size from the config (:func:`~mmcpd.utils.config.
example_input_shape`). ``cpd = None`` trains without pruning.
"""
import copy
import inspect
from typing import List, Optional, Tuple

from mmengine.config import Config, ConfigDict

from mmcpd.engine.cpd_fields import CPD_KEY
from mmcpd.utils.config import example_input_shape

HOOK_TYPE = 'mmcpd.engine.hooks.CPDHook'


def is_cpd_hook(hook) -> bool:
    """Whether a ``custom_hooks`` entry (config or object) is a CPDHook."""
    kind = hook.get('type', '') if isinstance(hook, dict) else type(hook)
    if not isinstance(kind, str):
        kind = getattr(kind, '__name__', '')
    return kind.rpartition('.')[2] == 'CPDHook'


def _hook_args() -> List[str]:
    from mmcpd.engine.hooks import CPDHook
    return list(inspect.signature(CPDHook.__init__).parameters)[1:]


def cpd_hook_cfg(cfg: Config) -> Tuple[Optional[dict], str]:
    """The CPDHook config that ``cfg.cpd`` asks for.

    Args:
        cfg (Config): A training config.

    Returns:
        tuple[dict | None, str]: The hook config (None when ``cfg`` has no
        ``cpd`` or ``cpd=None``) and a line for the log that says which
        example input combs the model and where its size came from.

    Raises:
        TypeError: ``cpd`` is not a dict.
        KeyError: ``cpd`` has a key that CPDHook does not take.
    """
    settings = cfg.get(CPD_KEY, None)
    if settings is None:
        return None, ''
    if not isinstance(settings, dict):
        raise TypeError(f'`{CPD_KEY}` should be a dict of CPDHook '
                        f'arguments, but got {type(settings).__name__}')
    known = _hook_args()
    unknown = sorted(set(settings) - set(known) - {'type'})
    if unknown:
        raise KeyError(f'`{CPD_KEY}` should only have keys in {known} (the '
                       f'arguments of CPDHook), but got {unknown}')
    hook = dict(type=HOOK_TYPE)
    hook.update(copy.deepcopy(dict(settings)))
    if hook.get('input_shape', None) is None:
        shape, source = example_input_shape(cfg)
        hook['input_shape'] = shape
    else:
        shape, source = tuple(hook['input_shape']), f'`{CPD_KEY}.input_shape`'
    return hook, (f'CPD: the model is combed with an input of shape '
                  f'{tuple(shape)}, from {source}')


def add_cpd_hook(cfg: Config) -> str:
    """Append the CPDHook of ``cfg.cpd`` to ``cfg.custom_hooks``; the
    config's other hooks stay. ``cfg`` is changed in place.

    Args:
        cfg (Config): A training config.

    Returns:
        str: The log line of :func:`cpd_hook_cfg` ('' without ``cpd``).

    Raises:
        ValueError: ``custom_hooks`` already has a CPDHook: two would prune.
    """
    hook, note = cpd_hook_cfg(cfg)
    if hook is None:
        return note
    hooks = list(cfg.get('custom_hooks', None) or [])
    if any(is_cpd_hook(h) for h in hooks):
        raise ValueError(
            f'`custom_hooks` should not have a CPDHook when `{CPD_KEY}` is '
            'set (both would prune), but it has one: change the settings in '
            f'`{CPD_KEY} = dict(...)` and drop the hook, or set '
            f'`{CPD_KEY} = None` to keep your own hook')
    hooks.append(ConfigDict(hook) if isinstance(cfg, Config) else hook)
    cfg['custom_hooks'] = hooks
    return note
