"""A cut positional table keeps its selected channels through the spec
(JSON, rebuilt from a fresh model and strictly loaded weights), masked
training and ONNX; a model whose table is not cut is left as it was."""
import copy

import pytest
import torch

from mmcpd.comb.fixed_tables import SELECT_BUFFER
from mmcpd.prune.spec import PrunedSpec, apply_spec
from mmcpd.prune.spec.table_select import install_selectors, selector_of
from mmcpd.prune.surgery.dead import DeadUnits
from mmcpd.prune.surgery.physical import prune_units
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.prune.verified_comb import comb_model
from tests.test_comb.test_detr_pos_embed import TinyDETR

KEY = f'pos.{SELECT_BUFFER}'


@pytest.fixture(scope='module')
def cut():
    """A random TinyDETR, its pruned copy (units 1 and 3 of the stream
    removed: 8 of 16 channels kept) and the spec through JSON."""
    model = randomize_model(TinyDETR(), seed=1).eval()
    x = torch.randn(1, 3, 6, 6)
    result = comb_model(model, x)
    stream = next(g for g in result.groups if g.root == 'proj.weight')
    small = copy.deepcopy(model)
    spec = prune_units(small, result, {stream.id: [1, 3]})
    return model, small, PrunedSpec.from_dict(spec.to_dict()), result, x


def test_spec_rebuilds_the_selection_from_a_fresh_model(cut):
    model, small, spec, _, x = cut
    assert spec.shapes[KEY] == [8]
    fresh = randomize_model(TinyDETR(), seed=5)
    rebuilt = apply_spec(fresh, spec)
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    assert getattr(rebuilt.pos, SELECT_BUFFER).tolist() == [
        0, 1, 2, 3, 8, 9, 10, 11]
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), small(x), rtol=0,
                                   atol=0)
        # the table itself: the full one's kept channels
        full = model.pos(None, input=torch.zeros(1, 16, 6, 6))
        torch.testing.assert_close(
            small.pos(None, input=torch.zeros(1, 8, 6, 6)),
            full[:, [0, 1, 2, 3, 8, 9, 10, 11]])


def test_uncut_model_keeps_its_state_dict(cut):
    model, _, _, result, _ = cut
    assert KEY not in model.state_dict()
    masked = copy.deepcopy(model)
    stream = next(g for g in result.groups if g.root == 'proj.weight')
    DeadUnits(masked, result.groups, {stream.id: [0]}).zero_tensors()
    assert masked.state_dict().keys() == model.state_dict().keys()
    assert torch.count_nonzero(masked.proj.weight[:4]) == 0


def test_a_name_no_table_holds_is_still_refused(cut):
    model, _, _, result, _ = cut
    assert selector_of(model, KEY) is model.pos
    assert selector_of(model, f'proj.{SELECT_BUFFER}') is None
    assert selector_of(model, 'pos.other') is None
    assert install_selectors(copy.deepcopy(model), ['proj.weight']) == []
    stream = next(g for g in result.groups if g.root == 'proj.weight')
    with pytest.raises(KeyError, match='`proj.weight`'):
        DeadUnits(torch.nn.Linear(2, 2), [stream], {stream.id: [0]})


def test_selection_exports_to_onnx(cut, tmp_path):
    import onnx

    from mmcpd.deploy import export_onnx, verify_onnx
    _, small, _, _, x = cut
    path = export_onnx(small, x, str(tmp_path / 'tiny_detr.onnx'))
    assert 'Gather' in {n.op_type for n in onnx.load(path).graph.node}
    assert verify_onnx(path, small, x)  # raises where they differ
