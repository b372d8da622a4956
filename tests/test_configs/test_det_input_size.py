"""A detector config whose resizes keep the aspect ratio gives no input
size: CPDRunner's transform asks for ``cpd.input_shape``, or combs at it
and says so (issue 25)."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmcpd.engine.config_transform import transform_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE = osp.join(REPO, 'configs', '_base_', 'cpd_det.py')
DEMO = osp.join(REPO, 'configs', 'demo', 'cpd_retinanet_digits-det.py')


def _coco_config(tmp_path, extra: str = '') -> Config:
    """MMDetection's COCO RetinaNet (``Resize(scale=(1333, 800),
    keep_ratio=True)``) with the CPD detection base."""
    path = tmp_path / 'my_retinanet_cpd.py'
    path.write_text("_base_ = ['mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'"
                    f', {BASE!r}]\n{extra}')
    return Config.fromfile(str(path))


def test_keep_ratio_resizes_ask_for_input_shape(tmp_path):
    cfg = _coco_config(tmp_path)
    with pytest.raises(ValueError) as error:
        transform_config(cfg)
    message = str(error.value)
    assert '`cpd = dict(input_shape=(1, 3, H, W))`' in message
    # the resizes that hide the size are named
    assert ('`test_pipeline[1]` (Resize, scale=(1333, 800))') in message
    assert '`train_pipeline[2]` (Resize, scale=(1333, 800))' in message


def test_input_shape_is_used_and_said(tmp_path):
    cfg = _coco_config(tmp_path, 'cpd = dict(input_shape=(1, 3, 320, 480))\n')
    notes = transform_config(cfg)
    assert ('CPD: `test_pipeline[1]` (Resize, scale=(1333, 800)) keeps the '
            'aspect ratio, so the config fixes no input size: the detector '
            'is combed at `cpd.input_shape` (1, 3, 320, 480)') in notes
    hook, = [h for h in cfg.custom_hooks if 'CPDHook' in str(h['type'])]
    assert tuple(hook['input_shape']) == (1, 3, 320, 480)


def test_a_fixed_resize_gives_the_size():
    """The demo detector resizes to 64x64 without keeping the ratio."""
    cfg = Config.fromfile(DEMO)
    notes = transform_config(cfg)
    assert any('combed with an input of shape (1, 3, 64, 64), from '
               '`test_pipeline[1]` (Resize.scale)' in note for note in notes)
    assert not any('keeps the aspect ratio' in note for note in notes)
