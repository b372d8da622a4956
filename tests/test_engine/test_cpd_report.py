from mmcpd.comb.group import CoupledGroup, Member
from mmcpd.engine.hooks.cpd_report import channel_table, plot_history


def _group(gid, name, channels):
    index = tuple(range(channels))
    return CoupledGroup(gid, (Member(name, 0, 'out', index,
                                     (1, ) * channels), ), channels)


def test_channel_table_lists_kept_channels():
    groups = [_group(0, 'stem.conv.weight', 16), _group(1, 'fc.weight', 8)]
    table = channel_table(groups, {0: [0, 1, 2, 3]})
    lines = table.splitlines()
    assert lines[0].split() == ['group', 'layer', 'channels', 'kept',
                                'ratio']
    assert lines[2].split() == ['0', 'stem.conv.weight', '16', '12', '75%']
    assert lines[3].split() == ['1', 'fc.weight', '8', '8', '100%']


def test_plot_is_written(tmp_path):
    history = [dict(iter=0, params_ratio=1.0, flops_ratio=1.0),
               dict(iter=10, params_ratio=0.7, flops_ratio=0.6)]
    val = [dict(iter=10, accuracy=55.0), dict(iter=20, accuracy=60.0)]
    path = plot_history(history, val, str(tmp_path / 'p.png'))
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
