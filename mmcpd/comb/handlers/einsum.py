"""``torch.einsum``: a product over named indices.

An index that the output keeps carries its operands' labels to that output
dim (they are tied: a channel of one operand goes with the same position of
the other); an index summed over ties its operands' dims as the contracted
dim of a matmul does (K-Net's ``'bnhw,bchw->bnc'``, EMANet's
``'bcn,bck->bnk'``). Ellipses, an implicit output and an index repeated
within one operand (a diagonal) freeze what the op touches.
"""
from typing import List, Optional, Tuple

from mmcpd.comb.couple import couple
from mmcpd.comb.handlers.base import OpContext, function, register


def parse_einsum(equation: str, ndims: List[int]
                 ) -> Optional[Tuple[List[str], str]]:
    """``(operand terms, output term)`` of an explicit equation whose terms
    fit the operands' dims, or None for what the handler does not take."""
    equation = equation.replace(' ', '')
    if '...' in equation or '->' not in equation:
        return None
    lhs, out = equation.split('->')
    terms = lhs.split(',')
    if len(terms) != len(ndims) or len(set(out)) != len(out):
        return None
    for term, nd in zip(terms, ndims):
        if len(term) != nd or len(set(term)) != len(term):
            return None
    return terms, out


@register(function('einsum'))
def einsum(ctx: OpContext) -> None:
    graph = ctx.graph
    operands = ctx.inputs
    parsed = parse_einsum(ctx.args[0], [t.dim() for t in operands])
    if parsed is None:
        reason = f'einsum {ctx.args[0]!r} (ellipsis, diagonal or implicit ' \
                 f'output) in {ctx.via}'
        ctx.freeze_inputs(reason)
        ctx.frozen_output(reason)
        return
    terms, out = parsed
    items = [(graph.get(t), tuple(t.shape),
              [out.index(c) if c in out else c for c in term])
             for term, t in zip(terms, operands)]
    graph.set(ctx.outputs[0], couple(graph, items, ctx.via))
