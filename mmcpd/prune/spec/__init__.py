"""The pruned architecture as plain data: a JSON-able spec of new shapes
and module attributes (:class:`PrunedSpec`), applied to a model built from
the original config (:func:`apply_spec`) after checks that name what does
not fit (:mod:`.check`)."""
from mmcpd.prune.spec.check import check_applied, check_spec
from mmcpd.prune.spec.pruned_spec import (CHECKPOINT_KEY, SPEC_VERSION,
                                          PrunedSpec, apply_spec,
                                          tensor_holders)

__all__ = [
    'CHECKPOINT_KEY', 'SPEC_VERSION', 'PrunedSpec', 'apply_spec',
    'check_applied', 'check_spec', 'tensor_holders'
]
