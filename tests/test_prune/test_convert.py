import pytest
import torch

from mmcpd.apis.convert import convert_checkpoint
from mmcpd.prune.convert import (deploy_from_training,
                                 student_state)
from .toy import ToyNet


def test_non_cpd_checkpoint_is_refused(tmp_path):
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': ToyNet().state_dict(), 'meta': {}}, path)
    with pytest.raises(KeyError, match='CPDHook'):
        convert_checkpoint(ToyNet(), str(path), str(tmp_path / 'out.pth'))
    with pytest.raises(KeyError, match='cpd_hook'):
        deploy_from_training(ToyNet(), torch.load(path))


def test_student_state_strips_prefix():
    ckpt = {'state_dict': {'student.a': 1, 'teacher.a': 2, 'student.b': 3}}
    assert student_state(ckpt, 'student.') == {'a': 1, 'b': 3}
    assert student_state(ckpt, '') == ckpt['state_dict']
