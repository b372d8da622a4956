"""What CPDHook shows: a line per prune step, and at the end a table of
widths and a plot."""
from typing import List, Mapping, Sequence

from mmcpd.comb.group import CoupledGroup
from mmcpd.prune.surgery.positions import unit_channels


def channel_table(groups: Sequence[CoupledGroup],
                  removed: Mapping[int, Sequence[int]]) -> str:
    """A text table of the channels each prunable group keeps.

    Args:
        groups (Sequence[CoupledGroup]): The prunable groups.
        removed (Mapping[int, Sequence[int]]): Removed units by group id.

    Returns:
        str: One line per group: id, root layer, channels before and after,
        and the fraction kept.
    """
    rows = []
    for group in groups:
        channels = unit_channels(group)
        total = sum(channels)
        kept = total - sum(channels[u] for u in removed.get(group.id, ()))
        rows.append((str(group.id), group.root, str(total), str(kept),
                     f'{kept / total:.0%}' if total else '-'))
    head = ('group', 'layer', 'channels', 'kept', 'ratio')
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    lines = ['  '.join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append('  '.join('-' * w for w in widths))
    for row in rows:
        lines.append('  '.join(c.ljust(w) for c, w in zip(row, widths)))
    return '\n'.join(lines)


def plot_history(history: List[dict], val_history: List[dict],
                 path: str) -> str:
    """Plot params / FLOPs left and validation metrics over iterations.

    Args:
        history (list[dict]): Prune steps, with ``iter``, ``params_ratio``
            and (optionally) ``flops_ratio``: fractions of the unpruned
            model left.
        val_history (list[dict]): Validation results, each ``iter`` plus
            metric name -> value.
        path (str): PNG file to write.

    Returns:
        str: ``path``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_cost, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    iters = [h['iter'] for h in history]
    for key, label in (('params_ratio', 'params'), ('flops_ratio', 'FLOPs')):
        values = [h.get(key) for h in history]
        if iters and all(v is not None for v in values):
            ax_cost.step(iters, values, where='post', marker='o', label=label)
    ax_cost.set_xlabel('iteration')
    ax_cost.set_ylabel('fraction of the unpruned model')
    ax_cost.set_ylim(0, 1.05)
    ax_cost.grid(alpha=0.3)
    if iters:
        ax_cost.legend()
    names = sorted({k for v in val_history for k in v if k != 'iter'})
    for name in names:
        points = [(v['iter'], v[name]) for v in val_history if name in v]
        ax_val.plot(*zip(*points), marker='o', label=name)
    ax_val.set_xlabel('iteration')
    ax_val.set_ylabel('validation metric')
    ax_val.grid(alpha=0.3)
    if names:
        ax_val.legend(fontsize='small')
    else:
        ax_val.text(
            0.5, 0.5, 'no validation', ha='center', transform=ax_val.transAxes)
    fig.suptitle('CPD pruning')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_step(runner, session, due, record: dict) -> None:
    """Log a prune step (``due``, a :class:`~mmcpd.prune.session.PruneStep`;
    ``record``, its history entry) and its scalars to the message hub."""
    for key in ('sparsity', 'params', 'flops', 'groups_pruned'):
        if record.get(key) is not None:
            runner.message_hub.update_scalar(f'train/cpd_{key}', record[key])
    skipped = ''
    importance = session.importance
    if importance.uses_grad:
        count = importance.skipped_steps
        runner.message_hub.update_scalar('train/cpd_skipped_steps', count)
        skipped = f', {count} steps with NaN/inf gradients left out of ' \
            'the importance so far'
    flops = record.get('flops_ratio')
    log = due.loop_log
    if log is not None:
        runner.message_hub.update_scalar('train/cpd_latency_ratio',
                                         log['ratio'])
        runner.logger.info(
            f"CPDHook closed loop: measured latency {log['ratio']:.3f} "
            f'of the unpruned model (goal {1 - due.goal:.3f}, predicted '
            f"{record['predicted_latency_ratio']:.3f}) after "
            f"{len(log['rounds'])} measurements in "
            f"{log['seconds']:.1f} s (predicted -> measured: " +
            ', '.join(f"{r['predicted']:.3f} -> {r['measured']:.3f}"
                      for r in log['rounds']) + ')')
    runner.logger.info(
        f'CPDHook step {due.step}/{session.schedule.num_steps} at '
        f'iter {runner.iter + 1}: {session.settings.metric} removed '
        f'{record["sparsity"]:.1%} (step target {due.goal:.1%}), params '
        f'{record["params"]:.0f} ({record["params_ratio"]:.1%})' +
        (f', FLOPs {record["flops"]:.3g} ({flops:.1%})' if flops is not None
         else '') + f', {len(due.new)} groups pruned this step{skipped}')
