"""Refuse a pruned spec that does not fit itself or the model.

A spec is a JSON file that can be edited or damaged. Before
:func:`~mmcpd.prune.spec.apply_spec` changes anything, :func:`check_spec`
compares it with the model:

- every tensor and module it names exists; tensors keep their rank and
  never grow, module attributes exist and keep their kind (an int stays an
  int, a tuple keeps its length) and never grow: pruning only removes;
- the spec against itself: for torch's own layers (convolutions, ``Linear``,
  batch / instance / group / layer norms, ``PReLU``,
  ``MultiheadAttention``) the width attributes must be the ones the tensor
  shapes give, and the tensors of one layer must agree (a conv's bias with
  its weight, a norm's statistics with its affine parameters);
- modules with ``num_heads`` and a head width (``head_dim(s)``) keep
  ``num_heads * head_dim == embed_dim`` where the model has it.

After applying, :func:`check_applied` checks that every tensor has the
spec's shape, so that loading a state dict can never broadcast into a
tensor of another width. Each error names the module or tensor and both
values.
"""
import math
from typing import Callable, Dict, Mapping, Optional, Tuple

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

Shape = Tuple[int, ...]
ShapeOf = Callable[[str], Optional[Shape]]
AttrOf = Callable[[str], object]

#: (heads, head width, total width) attribute names of attention modules.
_HEAD_ATTRS = (('num_heads', 'head_dims', 'embed_dims'),
               ('num_heads', 'head_dim', 'embed_dim'))


def _module_shape(module: nn.Module, name: str) -> Optional[Shape]:
    tensor = getattr(module, name, None)
    return None if tensor is None else tuple(tensor.shape)


def width_attrs(module: nn.Module,
                shape_of: Optional[ShapeOf] = None,
                attr_of: Optional[AttrOf] = None) -> dict:
    """Width attributes of torch's own layers, read off their tensors.

    Args:
        module (nn.Module): The layer.
        shape_of (Callable, optional): Shape of the layer's tensor of a
            given name. Defaults to the module's current tensors.
        attr_of (Callable, optional): Value of the layer's attribute of a
            given name. Defaults to the module's current attributes.

    Returns:
        dict: E.g. ``{'in_channels': 64, 'out_channels': 40}`` for a conv;
        empty for other modules.
    """
    shape_of = shape_of or (lambda n: _module_shape(module, n))
    attr_of = attr_of or (lambda n: getattr(module, n))
    if isinstance(module, _ConvNd):
        w, groups = shape_of('weight'), attr_of('groups')
        if module.transposed:
            return dict(in_channels=w[0], out_channels=w[1] * groups)
        return dict(in_channels=w[1] * groups, out_channels=w[0])
    if isinstance(module, nn.Linear):
        w = shape_of('weight')
        return dict(in_features=w[1], out_features=w[0])
    if isinstance(module, _NormBase):
        w = shape_of('weight') or shape_of('running_mean')
        return dict(num_features=w[0]) if w else {}
    if isinstance(module, nn.GroupNorm):
        w = shape_of('weight')
        return dict(num_channels=w[0]) if w else {}
    if isinstance(module, nn.LayerNorm):
        w = shape_of('weight')
        return dict(normalized_shape=tuple(w)) if w else {}
    if isinstance(module, nn.PReLU):
        return dict(num_parameters=math.prod(shape_of('weight')))
    if isinstance(module, nn.MultiheadAttention):
        return dict(head_dim=attr_of('embed_dim') // attr_of('num_heads'))
    return {}


def _tensor_shapes(module: nn.Module, attr_of: AttrOf) -> Dict[str, Shape]:
    """Shapes that the width attributes of a torch layer ask of its
    tensors (those it has)."""
    if isinstance(module, _ConvNd):
        c_in, c_out = attr_of('in_channels'), attr_of('out_channels')
        groups, kernel = attr_of('groups'), tuple(module.kernel_size)
        weight = (c_in, c_out // groups) if module.transposed else (
            c_out, c_in // groups)
        return dict(weight=weight + kernel, bias=(c_out, ))
    if isinstance(module, nn.Linear):
        c_out = attr_of('out_features')
        return dict(weight=(c_out, attr_of('in_features')), bias=(c_out, ))
    if isinstance(module, _NormBase):
        n = (attr_of('num_features'), )
        return dict(weight=n, bias=n, running_mean=n, running_var=n)
    if isinstance(module, nn.GroupNorm):
        n = (attr_of('num_channels'), )
        return dict(weight=n, bias=n)
    if isinstance(module, nn.LayerNorm):
        n = tuple(attr_of('normalized_shape'))
        return dict(weight=n, bias=n)
    if isinstance(module, nn.PReLU):
        return dict(weight=(attr_of('num_parameters'), ))
    if isinstance(module, nn.MultiheadAttention) and \
            module._qkv_same_embed_dim:
        e = attr_of('embed_dim')
        return dict(in_proj_weight=(3 * e, e), in_proj_bias=(3 * e, ))
    return {}


def _divides(module: nn.Module, attr_of: AttrOf) -> Tuple[str, ...]:
    """(divisor, dividend, ...) attributes that must divide evenly."""
    if isinstance(module, _ConvNd):
        return ('groups', 'in_channels', 'out_channels')
    if isinstance(module, nn.GroupNorm):
        return ('num_groups', 'num_channels')
    if isinstance(module, nn.MultiheadAttention):
        return ('num_heads', 'embed_dim')
    return ()


class _After:
    """A module as the spec will leave it: its attributes and shapes."""

    def __init__(self, name: str, module: nn.Module, attrs: Mapping,
                 shapes: Mapping[str, Shape]):
        self.name, self.module = name, module
        self.attrs, self.shapes = attrs, shapes

    def attr(self, key: str):
        return self.attrs[key] if key in self.attrs else getattr(
            self.module, key)

    def shape(self, key: str) -> Optional[Shape]:
        if key in self.shapes:
            return tuple(self.shapes[key])
        return _module_shape(self.module, key)

    def says(self, key: str) -> str:
        """Where a value comes from, for messages."""
        where = 'spec' if key in self.attrs or key in self.shapes else \
            'model'
        return f'{where} `{self.name}.{key}`' if self.name else \
            f'{where} `{key}`'


def _error(message: str) -> ValueError:
    return ValueError(f'the pruned spec does not fit: {message}')


def _check_grow(name: str, new, old) -> None:
    """New value (int or tuple of ints) of the same kind, never larger."""
    if isinstance(old, bool) or not isinstance(old, (int, tuple, list)):
        raise _error(f'`{name}` is a {type(old).__name__} in the model, '
                     'not a width that pruning changes')
    if isinstance(old, int):
        ok = isinstance(new, int) and not isinstance(new, bool)
        pairs = [(new, old)] if ok else []
    else:
        ok = isinstance(new, (tuple, list)) and len(new) == len(old) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in new)
        pairs = list(zip(new, old)) if ok else []
    if not ok:
        raise _error(f'`{name}` should be like {old!r} (the model\'s '
                     f'value), but the spec gives {new!r}')
    if any(n < 1 or n > o for n, o in pairs):
        raise _error(f'`{name}` is {new!r} in the spec but {old!r} in the '
                     'model: pruning keeps between 1 and the original '
                     'number of units')


def _check_layer(after: _After) -> None:
    module = after.module
    for key, value in width_attrs(module, after.shape, after.attr).items():
        current = after.attr(key)
        if isinstance(value, tuple):
            current = tuple(current)
        if current != value:
            if key == 'head_dim':
                given = ' and '.join(f'{after.says(a)} = {after.attr(a)}'
                                     for a in ('embed_dim', 'num_heads'))
            else:
                source = 'weight' if after.shape('weight') else \
                    'running_mean'
                given = (f'{after.says(source)} of shape '
                         f'{list(after.shape(source))}')
                if isinstance(module, _ConvNd):
                    given += (f' with {after.says("groups")} = '
                              f'{after.attr("groups")}')
            raise _error(f'{after.says(key)} is {current!r}, but {given} '
                         f'of this {type(module).__name__} give {value!r}')
    names = _divides(module, after.attr)
    if names:
        divisor = after.attr(names[0])
        for key in names[1:]:
            if after.attr(key) % divisor:
                raise _error(f'{after.says(key)} = {after.attr(key)} is not '
                             f'a multiple of {after.says(names[0])} = '
                             f'{divisor}')
    for key, expected in _tensor_shapes(module, after.attr).items():
        shape = after.shape(key)
        if shape is not None and shape != expected:
            raise _error(f'{after.says(key)} has shape {list(shape)}, but '
                         f'the widths of this {type(module).__name__} '
                         f'({after.attrs or "unchanged"}) need '
                         f'{list(expected)}')


def _check_heads(after: _After) -> None:
    module = after.module
    for heads, width, total in _HEAD_ATTRS:
        values = [getattr(module, a, None) for a in (heads, width, total)]
        if not all(isinstance(v, int) for v in values):
            continue
        if values[0] * values[1] != values[2]:
            continue  # the model itself does not tie them
        new = [after.attr(a) for a in (heads, width, total)]
        if new[0] * new[1] != new[2]:
            raise _error(f'{after.says(heads)} = {new[0]} times '
                         f'{after.says(width)} = {new[1]} should be '
                         f'{after.says(total)}, but it is {new[2]}')


def check_spec(model: nn.Module, spec) -> None:
    """Check ``spec`` against itself and ``model`` before applying it.

    Args:
        model (nn.Module): The model the spec will resize (the unpruned
            architecture, or one already pruned to the same spec).
        spec (PrunedSpec): The spec.

    Raises:
        ValueError: A tensor or module of the spec is not in the model, a
            shape or attribute is of another kind or larger than the
            model's, or the attributes and shapes of a layer disagree. The
            message names the tensor or module and both values.
    """
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    modules = dict(model.named_modules(remove_duplicate=False))
    missing = [n for n in spec.shapes if n not in tensors]
    if missing:
        raise _error(f'it names {len(missing)} tensors that the model does '
                     f'not have, e.g. `{missing[0]}`: was it made for '
                     'another config?')
    missing = [m for m in spec.attrs if m not in modules]
    if missing:
        raise _error(f'it names {len(missing)} modules that the model does '
                     f'not have, e.g. `{missing[0]}`: was it made for '
                     'another config?')
    aliases: Dict[int, list] = {}
    for name, tensor in tensors.items():
        aliases.setdefault(id(tensor), []).append(name)
    shapes: Dict[str, Dict[str, Shape]] = {}
    seen: Dict[int, Tuple[str, list]] = {}
    for name, shape in spec.shapes.items():
        old = tensors[name]
        if len(shape) != old.dim():
            raise _error(f'`{name}` has {old.dim()} dims in the model '
                         f'{list(old.shape)} but {len(shape)} in the spec '
                         f'{list(shape)}')
        _check_grow(name, tuple(shape), tuple(old.shape))
        other = seen.setdefault(id(old), (name, list(shape)))
        if other[1] != list(shape):
            raise _error(f'`{other[0]}` and `{name}` are one tensor in the '
                         f'model, but the spec gives them shapes {other[1]} '
                         f'and {list(shape)}')
        for alias in aliases[id(old)]:  # shared tensors: every holder
            mod_name, _, key = alias.rpartition('.')
            shapes.setdefault(mod_name, {})[key] = tuple(shape)
    for mod_name, attrs in spec.attrs.items():
        module = modules[mod_name]
        for key, value in attrs.items():
            if not hasattr(module, key):
                raise _error(f'module `{mod_name}` '
                             f'({type(module).__name__}) has no attribute '
                             f'`{key}`: was the spec made for another '
                             'config?')
            _check_grow(f'{mod_name}.{key}', value, getattr(module, key))
    named: Dict[int, list] = {}  # a module held under several names
    for name, module in modules.items():
        named.setdefault(id(module), []).append(name)
    for mod_name in sorted(set(shapes) | set(spec.attrs)):
        attrs = {}
        for alias in named[id(modules[mod_name])]:
            attrs.update(spec.attrs.get(alias, {}))
        after = _After(mod_name, modules[mod_name], attrs,
                       shapes.get(mod_name, {}))
        _check_layer(after)
        _check_heads(after)


def check_applied(model: nn.Module, spec) -> None:
    """Check that ``model`` has every shape and attribute of ``spec``.

    Raises:
        ValueError: A tensor or attribute differs from the spec (e.g. an
            attribute that the module does not let be set).
    """
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    for name, shape in spec.shapes.items():
        if list(tensors[name].shape) != list(shape):
            raise _error(f'after applying it, `{name}` has shape '
                         f'{list(tensors[name].shape)} instead of '
                         f'{list(shape)}')
    modules = dict(model.named_modules(remove_duplicate=False))
    for mod_name, attrs in spec.attrs.items():
        for key, value in attrs.items():
            got = getattr(modules[mod_name], key)
            if (tuple(got) if isinstance(got, list) else got) != (
                    tuple(value) if isinstance(value, list) else value):
                raise _error(f'after applying it, `{mod_name}.{key}` is '
                             f'{got!r} instead of {value!r}')
