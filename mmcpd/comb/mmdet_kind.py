"""What kind of MMDetection object a model or module is, found by the
names of its classes, without importing mmdet for models that are not
MMDetection's."""
from typing import Any

__all__ = ['is_mmdet']


def is_mmdet(obj: Any, class_name: str) -> bool:
    """Whether ``obj`` is an instance of MMDetection's class
    ``class_name`` (subclasses of other packages, e.g. MMYOLO's, included).
    """
    return any(cls.__name__ == class_name
               and cls.__module__.split('.')[0] == 'mmdet'
               for cls in type(obj).__mro__)
