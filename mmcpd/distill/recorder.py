"""Record the outputs of named submodules with forward hooks."""
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator

import torch
from torch import nn


def check_module_names(model: nn.Module, names: Iterable[str],
                       role: str) -> None:
    """Check that ``model`` has a submodule of each name.

    Raises:
        ValueError: Naming the first name that is not a submodule.
    """
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            raise ValueError(f'the {role} ({type(model).__name__}) has no '
                             f'submodule `{name}`')


@contextmanager
def record_outputs(model: nn.Module,
                   names: Iterable[str]) -> Iterator[Dict[str, object]]:
    """Collect the outputs of submodules while ``model`` runs.

    Hooks are registered on entry and removed on exit, so the model keeps
    no trace of recording. A module that runs several times in one forward
    keeps its last output. Outputs are stored as they are (no copy, no
    detach), so gradients flow through them.

    Args:
        model (nn.Module): The model whose submodules to record.
        names (Iterable[str]): Submodule names, as in
            ``model.named_modules()``.

    Yields:
        dict[str, Any]: Filled with ``name -> output`` as the model runs.

    Raises:
        ValueError: If a name is not a submodule of ``model``.
        RuntimeError: On exit, if a recorded module did not run.

    Examples:
        >>> with record_outputs(model, ['backbone.layer4']) as outputs:
        ...     model(inputs, mode='tensor')
        >>> outputs['backbone.layer4'].shape
    """
    names = list(dict.fromkeys(names))
    check_module_names(model, names, 'model')
    modules = dict(model.named_modules())
    outputs: Dict[str, object] = {}
    handles = []

    def make_hook(name: str):

        def hook(module: nn.Module, args, output) -> None:
            outputs[name] = output

        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(
                make_hook(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if name not in outputs]
    if missing:
        raise RuntimeError(
            f'submodules {missing} of {type(model).__name__} did not run '
            'in its forward pass, so their outputs cannot be distilled')


def as_tensor(output: object, name: str, role: str) -> torch.Tensor:
    """Return a recorded output if it is a tensor.

    Raises:
        TypeError: Naming the module whose output is not a tensor.
    """
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f'the output of `{name}` in the {role} should be a tensor to be '
            f'distilled, but got {type(output).__name__}; record a '
            'submodule that returns a single tensor')
    return output
