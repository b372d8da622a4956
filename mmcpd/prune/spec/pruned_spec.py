"""The pruned-architecture spec: what a pruned model looks like, as JSON.

A spec lists, for every parameter and buffer whose shape differs from the
model that the original config builds, its new shape, and for every module
whose attributes changed (``num_heads``, ``groups``, ``normalized_shape``,
...), the new values. Original config + spec + state dict rebuild the pruned
model; no module is ever pickled (timm keeps pruned models the same way, as
``layer.weight:[shape]`` text). A spec that does not fit itself or the model
(an edited ``out_channels``, a tensor of another config) is refused before
anything changes (:mod:`.spec_check`).

Examples:
    >>> spec, _ = mmcpd.prune_model(model, x, ratio=0.3)  # in place
    >>> spec.save('pruned.json')
    >>> model = build_from_config(cfg)          # unpruned architecture
    >>> apply_spec(model, PrunedSpec.load('pruned.json'))
    >>> model.load_state_dict(state_dict)       # weights of the pruned model
"""
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from mmcpd.prune.spec.check import check_applied, check_spec
from mmcpd.prune.spec.table_select import install_selectors

SPEC_VERSION = 1
#: Key under which checkpoints written by mmcpd carry the spec.
CHECKPOINT_KEY = 'pruned_spec'


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return {'__tuple__': [_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _positive(name: str, value: Any, kind: type) -> Any:
    """``value`` (an int or a list / tuple of ints) if all are >= 1."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1
            for v in items):
        raise ValueError(f'`{name}` in the pruned spec should be a positive '
                         f'int or a list of them, but got {value!r}')
    return kind(value) if kind is list else value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict) and '__tuple__' in value:
        return tuple(_from_jsonable(v) for v in value['__tuple__'])
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


@dataclass
class PrunedSpec:
    """Shapes and module attributes of a pruned model.

    Args:
        shapes (dict[str, list[int]]): New shape of each parameter or buffer
            that was pruned, by its ``state_dict`` name.
        attrs (dict[str, dict]): New attribute values, by module name.
    """
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    attrs: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    version: int = SPEC_VERSION

    def __bool__(self) -> bool:
        return bool(self.shapes or self.attrs)

    def to_dict(self) -> dict:
        return dict(
            version=self.version,
            shapes={k: list(v)
                    for k, v in self.shapes.items()},
            attrs={
                m: {a: _jsonable(v)
                    for a, v in attrs.items()}
                for m, attrs in self.attrs.items()
            })

    @classmethod
    def from_dict(cls, data: dict) -> 'PrunedSpec':
        """Read a spec from :meth:`to_dict`'s form.

        Raises:
            ValueError: ``data`` is not a spec, is of a newer version, or a
                shape or attribute value is not positive ints (the message
                names it).
        """
        if not isinstance(data, dict) or 'shapes' not in data:
            raise ValueError('a pruned spec should be a dict with `shapes` '
                             f'and `attrs`, but got {type(data).__name__}')
        version = data.get('version', SPEC_VERSION)
        if version > SPEC_VERSION:
            raise ValueError(f'pruned spec version {version} is newer than '
                             f'this mmcpd reads ({SPEC_VERSION})')
        attrs = data.get('attrs', {})
        if not isinstance(data['shapes'], dict) or not isinstance(
                attrs, dict) or not all(
                    isinstance(a, dict) for a in attrs.values()):
            raise ValueError('`shapes` and `attrs` of a pruned spec should be '
                             'dicts (of shapes, of dicts of attributes)')
        spec = cls(
            shapes={k: _positive(k, v, list)
                    for k, v in data['shapes'].items()},
            attrs={
                m: {a: _from_jsonable(v)
                    for a, v in attrs.items()}
                for m, attrs in attrs.items()
            },
            version=version)
        for m, values in spec.attrs.items():
            for a, v in values.items():
                _positive(f'{m}.{a}', v, type(v))
        return spec

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def save(self, path: str) -> None:
        with open(path, 'w') as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str) -> 'PrunedSpec':
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def merge(self, newer: 'PrunedSpec') -> 'PrunedSpec':
        """The spec of pruning with ``self`` first, then ``newer``."""
        attrs = {m: dict(a) for m, a in self.attrs.items()}
        for m, a in newer.attrs.items():
            attrs.setdefault(m, {}).update(a)
        return PrunedSpec({**self.shapes, **newer.shapes}, attrs)


def tensor_holders(model: nn.Module) -> Dict[int, list]:
    """Every ``(module, attribute)`` holding each parameter or buffer, by
    ``id`` of the tensor."""
    holders: Dict[int, List[Tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for attr, tensor in table.items():
                if tensor is not None:
                    holders.setdefault(id(tensor), []).append((module, attr))
    return holders


def apply_spec(model: nn.Module, spec: PrunedSpec) -> nn.Module:
    """Resize ``model`` in place to the architecture that ``spec`` describes.

    Fixed tables whose kept channels the spec shapes get their selector
    first (:mod:`.table_select`: an index buffer that the pruned state
    dict fills). The spec is checked
    (:func:`~mmcpd.prune.spec.check.check_spec`: every name in the model,
    nothing grows, attributes and shapes of each layer agree), so that a
    damaged or edited spec changes nothing else. Then
    parameters and buffers are replaced by uninitialised tensors of the new
    shapes (load the pruned state dict afterwards; tensors shared by
    several modules stay shared) and module attributes are set, and the
    model is checked to have every shape and attribute of the spec. The
    modules stay the classes they were.

    Raises:
        ValueError: The spec does not fit the model or itself; the message
            names the tensor or module and both values.
    """
    install_selectors(model, spec.shapes)
    check_spec(model, spec)
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    holders = tensor_holders(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    for name, shape in spec.shapes.items():
        old = tensors[name]
        if list(old.shape) == list(shape):
            continue
        new = torch.empty(shape, dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            new = nn.Parameter(new, requires_grad=old.requires_grad)
        for module, attr in holders[id(old)]:
            table = module._parameters if isinstance(
                new, nn.Parameter) else module._buffers
            table[attr] = new
    for mod_name, attrs in spec.attrs.items():
        for attr, value in attrs.items():
            setattr(modules[mod_name], attr, value)
    check_applied(model, spec)
    return model
