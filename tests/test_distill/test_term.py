import pytest

from mmcpd.distill import CWDLoss, KDLoss, MSELoss, build_terms


def test_terms_are_named_after_loss_or_module():
    terms = build_terms([
        dict(type='KDLoss', tau=4.0),
        dict(type='MSELoss', outputs='backbone.layer4'),
        dict(type='CWDLoss', outputs=('neck', 'neck.0'), name='neck'),
    ])
    assert [t.key for t in terms
            ] == ['loss_kd', 'loss_feat_backbone_layer4', 'loss_feat_neck']
    assert isinstance(terms[0].loss, KDLoss) and terms[0].loss.tau == 4.0
    assert terms[0].on_logits and terms[0].student is None
    assert isinstance(terms[1].loss, MSELoss)
    assert (terms[1].student, terms[1].teacher) == ('backbone.layer4',
                                                    'backbone.layer4')
    assert isinstance(terms[2].loss, CWDLoss)
    assert (terms[2].student, terms[2].teacher) == ('neck', 'neck.0')
    assert str(terms[2]) == ('loss_feat_neck  CWDLoss  '
                             'student.neck -> teacher.neck.0')


def test_duplicate_names_are_refused():
    with pytest.raises(
            ValueError,
            match=r'distill_losses\[1\] would be '
            'logged as `loss_kd`'):
        build_terms([dict(type='KDLoss'), dict(type='KDLoss', tau=2.0)])


def test_malformed_config_is_named():
    with pytest.raises(
            ValueError,
            match=r'`outputs` of distill_losses\[0\]'
            ".*got \\('a', 'b', 'c'\\)"):
        build_terms([dict(type='KDLoss', outputs=('a', 'b', 'c'))])
    with pytest.raises(
            TypeError, match='should be a list of dicts, but got '
            'dict'):
        build_terms(dict(type='KDLoss'))
    with pytest.raises(KeyError, match='Foo'):
        build_terms([dict(type='Foo')])
