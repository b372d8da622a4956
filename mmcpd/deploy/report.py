"""Show a benchmark result as a table, a JSON file and a latency plot."""
import json
import os
import os.path as osp

__all__ = ['result_table', 'write_json', 'plot_latency']

_STATS = ('mean_ms', 'median_ms', 'p90_ms', 'p99_ms', 'std_ms')


def _si(value, unit: str = '') -> str:
    if value is None:
        return '-'
    for factor, prefix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(value) >= factor:
            return f'{value / factor:.2f}{prefix}{unit}'
    return f'{value:.0f}{unit}'


def _ms(value: float) -> str:
    return f'{value:.3f}' if value < 10 else f'{value:.1f}'


def result_table(result: dict):
    """A :class:`rich.table.Table` of a :func:`benchmark_models` result."""
    from rich.table import Table

    system = result['system']
    settings = result['settings']
    title = (f"onnxruntime {system['onnxruntime_version']} "
             f"{system['provider']}, {system['threads']} threads, "
             f"{system['cpu']}, input {settings['shape']}, "
             f"{settings['runs']} runs after {settings['warmup']}; "
             'latency in ms')
    table = Table(title=title)
    columns = [
        'model', 'params', 'FLOPs', 'mean', 'median', 'p90', 'p99', 'std',
        'img/s'
    ]
    for column in columns:
        table.add_column(
            column, justify='left' if column == 'model' else 'right')
    for name, entry in result['models'].items():
        lat = entry['latency']
        table.add_row(name, _si(entry['params']), _si(entry['flops']),
                      *[_ms(lat[k]) for k in _STATS],
                      f"{lat['throughput']:.1f}")
        slim = entry.get('onnxslim')
        if slim is not None:
            other = slim['unslimmed_latency'] if settings['simplify'] else \
                slim['latency']
            label = 'unslimmed' if settings['simplify'] else 'onnxslim'
            table.add_row(f'  {label}', '', '',
                          *[_ms(other[k]) for k in _STATS],
                          f"{other['throughput']:.1f}")
    speed = result.get('speedup')
    if speed is not None:
        caption = (f"speedup: latency {speed['latency']:.2f}x (median "
                   f"{speed['latency_median']:.2f}x)")
        if speed['flops'] is not None:
            caption += (f", FLOPs {speed['flops']:.2f}x, latency/FLOPs "
                        f"{speed['latency_over_flops']:.2f}")
        table.caption = caption
    return table


def write_json(result: dict, path: str, with_times: bool = True) -> str:
    """Write the result as JSON; ``with_times`` keeps the raw run times."""
    data = json.loads(json.dumps(result))
    if not with_times:
        for entry in data['models'].values():
            entry.pop('times_ms', None)
            entry.get('onnxslim', {}).pop('other_times_ms', None)
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(data, f, indent=2)
    return path


def plot_latency(result: dict, path: str) -> str:
    """Histograms of each timed file's per-run latency, means marked."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    series = []
    for name, entry in result['models'].items():
        series.append((name, entry['times_ms']))
        slim = entry.get('onnxslim')
        if slim is not None:
            label = 'unslimmed' if result['settings']['simplify'] else \
                'onnxslim'
            series.append((f'{name} {label}', slim['other_times_ms']))
    everything = np.concatenate([times for _, times in series])
    low, high = np.percentile(everything, [0, 99.5])
    bins = np.linspace(low, max(high, low * 1.01 + 1e-6), 60)
    for i, (name, times) in enumerate(series):
        color = f'C{i}'
        mean = float(np.mean(times))
        ax.hist(
            times,
            bins=bins,
            alpha=0.5,
            color=color,
            label=f'{name}: mean {mean:.2f} ms')
        ax.axvline(mean, color=color, linestyle='--', linewidth=1)
    system = result['system']
    ax.set_xlabel('latency per batch (ms)')
    ax.set_ylabel('runs')
    ax.set_title(
        f"onnxruntime {system['provider']}, {system['threads']} "
        f"threads, input {result['settings']['shape']}",
        fontsize=9)
    ax.legend()
    fig.tight_layout()
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
