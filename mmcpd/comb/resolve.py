"""From labelled channels to coupled groups.

Connected components of the union graph are the units. Units whose members
(the parameter dims they touch) are the same form one coupled group. Joint
blocks (a channel dim split into heads and head dims) must lose whole slabs
along one axis; where the unions so far do not say which, the axis that
needs the fewest extra ties is chosen and tied. Balanced arrays (a grouped
conv's rows and input channels) need as many positions of each unit in
every conv group; where the unions do not give that, unbalanced units are
gathered into balanced sets, or else position ``j`` of every group is
tied.
"""
import fnmatch
from collections import Counter, defaultdict
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from mmcpd.comb.group import AttrUpdate, CoupledGroup, Member
from mmcpd.comb.labels import LabelGraph
from mmcpd.comb.result import CombResult, NormSite, OpMacs


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)),
                       shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _slab_ties(comp: np.ndarray, joint: List[np.ndarray]):
    """Extra unions making every joint block lose slabs along one axis."""
    extra_a, extra_b = [], []
    for ids in joint:
        c = comp[ids]
        best, best_cost = None, None
        for axis in range(c.ndim):
            rows = np.moveaxis(c, axis, 0).reshape(c.shape[axis], -1)
            cost = int(np.count_nonzero(rows != rows[:, :1]))
            if best_cost is None or cost < best_cost:
                best, best_cost = axis, cost
            if cost == 0:
                break
        if best_cost:
            rows = np.moveaxis(ids, best, 0).reshape(ids.shape[best], -1)
            a, b = np.broadcast_arrays(rows, rows[:, :1])
            extra_a.append(a.ravel())
            extra_b.append(b.ravel())
    return extra_a, extra_b


def _balanced_sets(counts: np.ndarray) -> List[List[int]]:
    """Unbalanced units (rows of ``counts``: positions per conv group)
    gathered, in order, into sets whose sums are balanced: to the first
    unit left, the first units that fill its groups' deficits without
    overshooting, the fullest first. The units no such set takes form the
    last set: the conv groups hold as many positions each, and so do the
    other sets, so it is balanced too."""
    left = list(range(len(counts)))
    sets, failed = [], []
    while left:
        first = left.pop(0)
        chosen, total = [first], counts[first].copy()
        while left and np.any(total != total[0]):
            need = total.max() - total
            pool = counts[left]
            fits = np.all(pool <= need, axis=1) & (pool.sum(1) > 0)
            if not fits.any():
                break
            pick = int(np.argmax(np.where(fits, pool.sum(1), -1)))
            chosen.append(left.pop(pick))
            total += counts[chosen[-1]]
        if np.all(total == total[0]):
            sets.append(chosen)
        else:  # no balanced set: give back all but the first
            failed.append(first)
            left = sorted(left + chosen[1:])
    if failed:  # what is left is balanced too: the rows were
        sets.append(failed)
    return sets


def _balance_ties(comp: np.ndarray, balanced: List[np.ndarray]):
    """Extra unions making every unit own as many positions in each row of
    a balanced array (a grouped conv's rows or input channels, one row per
    conv group).

    Where unbalanced units own one position each, they are tied column by
    column: position ``j`` of every conv group goes together. Larger
    unbalanced units (the slabs a channel shuffle sends to consecutive
    positions across conv group boundaries) are gathered into balanced
    sets (:func:`_balanced_sets`). Units the other ties already balance
    stay as they are.
    """
    extra_a, extra_b = [], []
    for ids in balanced:
        rows = ids.shape[0]
        if rows < 2:
            continue
        c = comp[ids]
        uniq, first, inv = np.unique(c, return_index=True,
                                     return_inverse=True)
        inv = inv.reshape(c.shape)
        counts = np.zeros((len(uniq), rows), dtype=np.int64)
        np.add.at(counts, (inv, np.arange(rows)[:, None]), 1)
        bad = np.any(counts != counts[:, :1], axis=1)
        if not bad.any():
            continue
        if counts[bad].sum(1).max() > 1:
            units = np.nonzero(bad)[0]
            units = units[np.argsort(first[units], kind='stable')]
            for chosen in _balanced_sets(counts[units]):
                heads = ids.ravel()[first[units[chosen]]]
                a, b = np.broadcast_arrays(heads, heads[:1])
                extra_a.append(a)
                extra_b.append(b)
            continue
        cols = np.nonzero(np.any(bad[inv], axis=0))[0]
        sub = ids[:, cols]
        a, b = np.broadcast_arrays(sub, sub[:1])
        extra_a.append(a.ravel())
        extra_b.append(b.ravel())
    return extra_a, extra_b


def components(graph: LabelGraph, max_rounds: int = 40) -> np.ndarray:
    a, b = graph.unions()
    comp = _components(graph.num_elements, a, b)
    for _ in range(max_rounds):
        # slabs first (the balance of a unit is judged on whole slabs),
        # then grouped convs' input channels, then their rows
        extra_a, extra_b = _slab_ties(comp, graph.joint)
        if not extra_a:
            extra_a, extra_b = _balance_ties(comp, graph.balanced_inputs)
        if not extra_a:
            extra_a, extra_b = _balance_ties(comp, graph.balanced)
        if not extra_a:
            break
        a = np.concatenate([a] + extra_a)
        b = np.concatenate([b] + extra_b)
        comp = _components(graph.num_elements, a, b)
    return comp


def _matches(name: str, patterns: Sequence[str]) -> str:
    for p in patterns:
        if fnmatch.fnmatchcase(name, p) or name == p or name.startswith(
                p + '.'):
            return p
    return ''


def check_ignore(model: nn.Module, ignore: Sequence[str]) -> None:
    """Raise when an ignore pattern matches no module of the model."""
    names = [n for n, _ in model.named_modules() if n]
    for p in ignore:
        if not isinstance(p, str):
            raise TypeError(f'`ignore` should be a list of module name '
                            f'patterns, but got {p!r}')
        if not any(_matches(n, [p]) for n in names):
            raise ValueError(f'`ignore` pattern {p!r} matches no module of '
                             f'{type(model).__name__}')


def resolve(graph: LabelGraph, model: nn.Module,
            ignore: Sequence[str] = ()) -> CombResult:
    comp = components(graph)
    n_comp = int(comp.max()) + 1 if comp.size else 0

    reasons: List[str] = []
    reason_of = np.full(n_comp, -1, dtype=np.int64)
    for ids, reason in graph.frozen:
        cs = np.unique(comp[ids])
        cs = cs[reason_of[cs] == -1]
        if cs.size:
            reason_of[cs] = len(reasons)
            reasons.append(reason)

    keys = list(graph.leaf_ids)
    rng = np.random.default_rng(0)
    key_hash = rng.integers(1, 2**62, size=len(keys), dtype=np.int64)
    signature = np.zeros(n_comp, dtype=np.int64)
    has_out = np.zeros(n_comp, dtype=bool)
    first_key = np.full(n_comp, len(keys), dtype=np.int64)
    sorted_comp = {}
    for k, key in enumerate(keys):
        c = comp[graph.leaf_ids[key]]
        order = np.argsort(c, kind='stable')
        sorted_comp[key] = (order, c[order])
        uniq = np.unique(c)
        signature[uniq] += key_hash[k]
        if graph.leaf_roles.get(key) == 'out':
            has_out[uniq] = True
            first_key[uniq] = np.minimum(first_key[uniq], k)

    by_signature: Dict[tuple, List[int]] = defaultdict(list)
    for u in np.nonzero(has_out)[0].tolist():
        by_signature[(int(signature[u]), int(reason_of[u]))].append(u)

    vias: Dict[int, List[str]] = defaultdict(list)
    for element, via in graph.via_marks():
        lst = vias[int(comp[element])]
        if via not in lst and len(lst) < 4:
            lst.append(via)

    groups: List[CoupledGroup] = []
    unit_of: Dict[int, Tuple[int, int]] = {}
    for (_, reason), units in sorted(
            by_signature.items(), key=lambda kv: first_key[kv[1][0]]):
        units = np.asarray(units)
        members, first = [], None
        for key in keys:
            order, c = sorted_comp[key]
            lo = np.searchsorted(c, units, 'left')
            hi = np.searchsorted(c, units, 'right')
            if hi[0] == lo[0]:
                continue
            if first is None:
                first = order[lo]
            members.append((key, order, lo, hi))
        ranked = np.argsort(first, kind='stable')
        units = units[ranked]
        gid = len(groups)
        group_members = []
        for key, order, lo, hi in members:
            lo, hi = lo[ranked], hi[ranked]
            index = np.concatenate([order[a:b] for a, b in zip(lo, hi)])
            group_members.append(
                Member(key[0], key[1], graph.leaf_roles.get(key, 'param'),
                       tuple(index.tolist()), tuple((hi - lo).tolist()),
                       graph.leaf_groups.get(key, 1)))
        group_members = tuple(group_members)
        frozen = reasons[reason] if reason >= 0 else None
        if frozen is None:
            pattern = _matches_any([m[0] for m in members], ignore)
            if pattern:
                frozen = f'ignored by pattern {pattern!r}'
        via = tuple(vias.get(int(units[0]), []))
        groups.append(
            CoupledGroup(gid, group_members, len(units), via, frozen))
        for j, u in enumerate(units.tolist()):
            unit_of[u] = (gid, j)

    attr_updates, groups = _attr_updates(graph, comp, unit_of, groups)
    norms = _norm_sites(graph, comp, unit_of, groups)
    seen = {k[0] for k in graph.leaf_ids}
    unexecuted = sorted({
        n.rpartition('.')[0]
        for n, _ in model.named_parameters() if n not in seen
    })
    return CombResult(
        tuple(groups), attr_updates, norms, dict(graph.param_macs),
        list(dict.fromkeys(graph.warnings)), unexecuted,
        {k: list(v)
         for k, v in graph.channel_acts.items()},
        _op_macs(graph, comp, unit_of))


def _matches_any(keys, patterns) -> str:
    if not patterns:
        return ''
    for name, _ in keys:
        module = name.rpartition('.')[0]
        found = _matches(module, patterns)
        if found:
            return found
    return ''


def _positions(comp, ids, unit_of):
    """(group, unit) of each position (row) of ids, or None if mixed."""
    rows = ids.reshape(ids.shape[0], -1) if ids.ndim > 1 else ids[:, None]
    c = comp[rows]
    single = np.all(c == c[:, :1], axis=1)
    return [unit_of.get(int(c[r, 0])) if single[r] else None
            for r in range(len(rows))]


def _op_macs(graph, comp, unit_of) -> Tuple[OpMacs, ...]:
    """Each op's MACs per position of its labelled dims, and which units
    own those positions."""
    ops = []
    for site, total, factors in graph.op_macs:
        dims = []
        for ids in factors:
            owners = Counter(
                unit_of.get(int(c), (-1, -1)) for c in comp[ids].tolist())
            dims.append(
                tuple((g, u, n) for (g, u), n in sorted(owners.items())))
        positions = int(np.prod([len(ids) for ids in factors]))
        ops.append(OpMacs(site, total / max(positions, 1), tuple(dims)))
    return tuple(ops)


def _per_unit(comp, ids, unit_of, groups):
    """``(group, amount per unit)`` of an attribute following ``ids``, and
    the groups whose units it does not all follow. Where units own
    different numbers of positions (a split with a remainder), the amount
    is a tuple, unit by unit."""
    counts = defaultdict(Counter)
    for pos in _positions(comp, ids, unit_of):
        if pos is not None:
            counts[pos[0]][pos[1]] += 1
    per_unit, uneven = [], []
    for gid, cnt in sorted(counts.items()):
        amounts = set(cnt.values())
        if len(cnt) != groups[gid].num_units:
            uneven.append(gid)
        elif len(amounts) == 1:
            per_unit.append((gid, amounts.pop()))
        else:
            per_unit.append(
                (gid, tuple(cnt[u] for u in range(groups[gid].num_units))))
    return tuple(per_unit), uneven


def _soft_updates(graph, comp, unit_of, groups, found) -> None:
    """Block width attributes (:mod:`.module_attrs`): kept where they
    follow the groups evenly and one way, dropped otherwise."""
    soft: Dict[Tuple[str, str], AttrUpdate] = {}
    dropped = set()
    for scope, attr, old, ids in graph.soft_attr_rules:
        key = (scope, attr)
        per_unit, uneven = _per_unit(comp, ids, unit_of, groups)
        prev = soft.get(key)
        if uneven or (prev is not None and prev.per_unit != per_unit):
            dropped.add(key)
        elif per_unit:
            soft[key] = AttrUpdate(scope, attr, old, per_unit)
    for key, update in soft.items():
        if key not in dropped and key not in found:
            found[key] = update


def _attr_updates(graph, comp, unit_of, groups):
    found: Dict[Tuple[str, str], AttrUpdate] = {}
    bad = {}
    clash = set()
    for scope, attr, old, ids in graph.attr_rules:
        per_unit, uneven = _per_unit(comp, ids, unit_of, groups)
        for gid in uneven:
            bad[gid] = (f'attribute `{scope}.{attr}` does not shrink '
                        'with every unit of the group')
        if not per_unit:
            continue
        update = AttrUpdate(scope, attr, old, per_unit)
        prev = found.get((scope, attr))
        if prev is not None and prev.per_unit != update.per_unit:
            for gid, _ in prev.per_unit + update.per_unit:
                bad[gid] = (f'attribute `{scope}.{attr}` follows two '
                            'different widths')
            clash.add((scope, attr))
            continue
        found[(scope, attr)] = update
    for key, what in graph.attr_math.items():
        update = found.get(key)
        if update is None:
            continue
        for gid, _ in update.per_unit:  # pruning would change `what`
            bad[gid] = (f'attribute `{key[0]}.{key[1]}` follows the width '
                        f'but Python computes {what} from it')
        clash.add(key)
    for key in clash:  # never applied: its groups are frozen
        found.pop(key, None)
    _soft_updates(graph, comp, unit_of, groups, found)
    if bad:
        groups = [
            g if g.id not in bad or g.frozen else CoupledGroup(
                g.id, g.members, g.num_units, g.via, bad[g.id])
            for g in groups
        ]
        graph.warnings.extend(dict.fromkeys(bad.values()))
    return tuple(found.values()), groups


def _site_channels(comp, ids, unit_of, groups):
    """``(group, unit)`` per position, and whether any group is prunable."""
    channels, prunable = [], False
    for pos in _positions(comp, ids, unit_of):
        if pos is None:
            channels.append((-1, -1))
        else:
            channels.append(pos)
            prunable = prunable or groups[pos[0]].prunable
    return tuple(channels), prunable


def _norm_sites(graph, comp, unit_of, groups):
    sites = []
    for scope, kind, ids in graph.channel_norms:
        channels, prunable = _site_channels(comp, ids, unit_of, groups)
        if prunable:
            sites.append(NormSite(scope, kind, channels))
    seen = {}
    clash = set()
    for scope, kind, index, dim, keeps, ids in graph.channel_mixes:
        channels, prunable = _site_channels(comp, ids, unit_of, groups)
        if not prunable:
            continue
        site = NormSite(scope, kind, channels, dim, index, keeps)
        key = (scope, kind, index, dim, len(channels))
        if seen.setdefault(key, site) != site:  # a module called twice
            clash.add(key)
        sites.append(site)
    if clash:  # the same call mixes other channels on another module call
        bad = {}
        for site in sites:
            key = (site.module, site.kind, site.index, site.dim,
                   len(site.channels))
            if site.index >= 0 and key in clash:
                for gid, _ in site.channels:
                    if gid >= 0:
                        bad[gid] = (f'`{site.kind}` in `{site.module}` mixes '
                                    'other channels on each call')
        for gid, why in bad.items():
            g = groups[gid]
            if not g.frozen:
                groups[gid] = CoupledGroup(g.id, g.members, g.num_units,
                                           g.via, why)
        graph.warnings.extend(dict.fromkeys(bad.values()))
        sites = [
            s for s in sites
            if any(gid >= 0 and groups[gid].prunable for gid, _ in s.channels)
        ]
    return tuple(dict.fromkeys(sites))
