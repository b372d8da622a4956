"""The pruned-architecture spec: what a pruned model looks like, as JSON.

A spec lists, for every parameter and buffer whose shape differs from the
model that the original config builds, its new shape, and for every module
whose attributes changed (``num_heads``, ``groups``, ``normalized_shape``,
...), the new values. Original config + spec + state dict rebuild the pruned
model; no module is ever pickled (timm keeps pruned models the same way, as
``layer.weight:[shape]`` text).

Examples:
    >>> spec = PrunedSpec.from_models(original, pruned)
    >>> spec.save('pruned.json')
    >>> model = build_from_config(cfg)          # unpruned architecture
    >>> apply_spec(model, PrunedSpec.load('pruned.json'))
    >>> model.load_state_dict(state_dict)       # weights of the pruned model
"""
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch
from torch import nn

SPEC_VERSION = 1
#: Key under which checkpoints written by mmcpd carry the spec.
CHECKPOINT_KEY = 'pruned_spec'


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return {'__tuple__': [_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


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
        if not isinstance(data, dict) or 'shapes' not in data:
            raise ValueError('a pruned spec should be a dict with `shapes` '
                             f'and `attrs`, but got {type(data).__name__}')
        version = data.get('version', SPEC_VERSION)
        if version > SPEC_VERSION:
            raise ValueError(f'pruned spec version {version} is newer than '
                             f'this mmcpd reads ({SPEC_VERSION})')
        return cls(
            shapes={k: [int(s) for s in v]
                    for k, v in data['shapes'].items()},
            attrs={
                m: {a: _from_jsonable(v)
                    for a, v in attrs.items()}
                for m, attrs in data.get('attrs', {}).items()
            },
            version=version)

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


def _tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    return tensors


def apply_spec(model: nn.Module, spec: PrunedSpec) -> nn.Module:
    """Resize ``model`` in place to the architecture that ``spec`` describes.

    Parameters and buffers are replaced by uninitialised tensors of the new
    shapes (load the pruned state dict afterwards) and module attributes are
    set. The modules stay the classes they were.

    Raises:
        KeyError: A name in the spec is not in the model (spec and config do
            not belong together).
    """
    tensors = _tensors(model)
    missing = [n for n in spec.shapes if n not in tensors]
    if missing:
        raise KeyError(
            f'the pruned spec names {len(missing)} tensors that the model '
            f'does not have, e.g. {missing[:3]}: was the spec made for '
            'another config?')
    modules = dict(model.named_modules())
    for name, shape in spec.shapes.items():
        mod_name, _, attr = name.rpartition('.')
        module = modules[mod_name]
        old = getattr(module, attr)
        new = torch.empty(shape, dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            setattr(module, attr,
                    nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module._buffers[attr] = new
    for mod_name, attrs in spec.attrs.items():
        if mod_name not in modules:
            raise KeyError(f'the pruned spec names module `{mod_name}` that '
                           'the model does not have')
        for attr, value in attrs.items():
            setattr(modules[mod_name], attr, value)
    return model
