"""Attributes that are lists of widths, updated element by element.

A split into sizes given by a list attribute (HorNet's gnConv splits by
``self.dims``) makes one attribute update per element, named
``'dims[2]'``, whose value is that element. The module keeps the list, so
the new values are written back into whole lists before they are set on
the module and recorded in the spec.
"""
from typing import Dict, Mapping, Optional, Tuple

from torch import nn


def element_attr(attr: str) -> Tuple[str, Optional[int]]:
    """``'dims[2]'`` -> ``('dims', 2)``; ``'width'`` -> ``('width', None)``.
    """
    name, bracket, rest = attr.partition('[')
    if bracket and rest.endswith(']') and rest[:-1].isdigit():
        return name, int(rest[:-1])
    return attr, None


def whole_lists(values: Mapping[str, dict],
                modules: Mapping[str, nn.Module]) -> Dict[str, dict]:
    """New attribute values with element updates merged into their lists.

    Args:
        values (dict): Module name -> {attribute: new value}, where an
            attribute may be a list element (``'dims[2]'``).
        modules (dict): Module name -> module, for the current lists.

    Returns:
        dict: The same with every ``'name[i]'`` replaced by ``'name'``, the
        module's list (of its own type) with those elements changed.
    """
    merged: Dict[str, dict] = {}
    for mod_name, attrs in values.items():
        out = merged.setdefault(mod_name, {})
        for attr, value in attrs.items():
            name, index = element_attr(attr)
            if index is None:
                out[attr] = value
                continue
            current = out.get(name, getattr(modules[mod_name], name))
            new = list(current)
            new[index] = value
            out[name] = type(current)(new)
    return merged
