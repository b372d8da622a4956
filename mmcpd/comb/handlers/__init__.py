"""Op handlers: how each kind of op moves and ties channel labels.

The table maps torch functions (as the tracer sees them) to handlers. An op
with no handler freezes the channels it touches, with a warning that names
it. Adding a layer kind is one handler in one of these files plus one test.
Ops that mix channels (``mixing``) are counted per module call, so that a
masked model can find each traced call again.
"""
from mmcpd.comb.handlers.base import HANDLERS, OpContext, handle_unknown, register  # noqa
from mmcpd.comb.handlers.mixing import COUNTED  # noqa
from mmcpd.comb.handlers import attention, concat, einsum, layers, mixing, norms, pointwise, reduce, scatter, shape  # noqa: F401,E501,I001

__all__ = ['HANDLERS', 'COUNTED', 'OpContext', 'handle_unknown', 'register']
