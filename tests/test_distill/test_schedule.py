import math

import pytest
from mmengine.logging import MessageHub

from mmcpd.distill import build_terms
from mmcpd.distill.schedule import WeightSchedule, current_iteration


@pytest.mark.parametrize('ramp, expected', [
    ('step', [1.0, 1.0, 1.0, 0.0, 0.0]),
    ('linear', [1.0, 0.75, 0.25, 0.0, 0.0]),
    ('cosine', [1.0, (1 + math.cos(math.pi / 4)) / 2,
                (1 + math.cos(3 * math.pi / 4)) / 2, 0.0, 0.0]),
])
def test_factor_falls_to_zero_at_end(ramp, expected):
    schedule = WeightSchedule(end=4, ramp=ramp)
    got = [schedule.factor(i) for i in (0, 1, 3, 4, 10)]
    assert got == pytest.approx(expected)


def test_terms_take_a_schedule_and_default_to_none():
    plain, ramped = build_terms([
        dict(type='KDLoss'),
        dict(type='MSELoss', outputs='backbone',
             weight_schedule=dict(end=8, ramp='linear'))
    ])
    assert plain.schedule is None and plain.factor(10**6) == 1.0
    assert ramped.schedule == WeightSchedule(8, 'linear')
    assert ramped.factor(2) == pytest.approx(0.75)
    assert ramped.factor(8) == 0.0


def test_iteration_is_the_runners():
    hub = MessageHub.get_instance('test_schedule_iteration')
    hub.update_info('iter', 7)
    assert current_iteration() == 7


@pytest.mark.parametrize('kwargs, culprit', [
    (dict(end=0), '`end`'),
    (dict(end=2.5), '`end`'),
    (dict(end=10, ramp='exp'), '`ramp`'),
])
def test_bad_schedules_name_the_culprit(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        WeightSchedule(**kwargs)


def test_schedule_of_a_term_should_be_a_dict():
    with pytest.raises(TypeError, match=r'`weight_schedule` of '
                       r'distill_losses\[0\] should be a dict'):
        build_terms([dict(type='KDLoss', weight_schedule=100)])
