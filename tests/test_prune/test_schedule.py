import pytest

from mmcpd.prune.schedule import PruneSchedule


def test_linear_steps_and_targets():
    s = PruneSchedule(0.6, interval=10, start=5, num_steps=3)
    assert [s.step_at(i) for i in (5, 14, 15, 25, 35, 45)] == \
        [None, None, 1, 2, 3, None]
    assert [round(s.target_at(k), 6) for k in (1, 2, 3)] == [0.2, 0.4, 0.6]
    assert s.end == 35


def test_cubic_front_loads_and_reaches_target():
    s = PruneSchedule(0.5, interval=10, end=40, kind='cubic')
    assert s.num_steps == 4
    assert s.target_at(1) == pytest.approx(0.5 * (1 - 0.75**3))
    assert s.target_at(1) > PruneSchedule(0.5, 10, end=40).target_at(1)
    assert s.target_at(4) == pytest.approx(0.5)
    assert s.step_at(50) is None  # fine-tuning after the last step


@pytest.mark.parametrize('kwargs,field', [
    (dict(target=1.2), '`target`'),
    (dict(target=0), '`target`'),
    (dict(interval=0), '`interval`'),
    (dict(start=-1), '`start`'),
    (dict(end=5), '`end`'),
    (dict(num_steps=0), '`num_steps`'),
    (dict(end=50, num_steps=2), '`end` or `num_steps`'),
])
def test_bad_arguments_name_the_field(kwargs, field):
    args = dict(target=0.5, interval=10, num_steps=None)
    if 'end' not in kwargs and 'num_steps' not in kwargs:
        args['num_steps'] = 2
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        PruneSchedule(**args)


def test_unknown_kind_is_named():
    with pytest.raises(KeyError, match="'exp'"):
        PruneSchedule(0.5, 10, num_steps=2, kind='exp')
