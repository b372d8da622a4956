"""The coverage tool: its zoo list, latency and why-frozen columns, cache."""
import importlib.util
import json
import os
import os.path as osp

import pytest

from mmcpd.testing.coverage import check_model, markdown_table
from mmcpd.testing.coverage_zoo import (DETECTION, DETECTION_SKIPPED,
                                        SKIPPED, ZOO)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location(
        'mmcpd_coverage_tool', osp.join(ROOT, 'tools', 'analysis',
                                        'coverage.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _folders():
    import mmpretrain
    import mmseg
    out = set()
    for pkg in (mmpretrain, mmseg):
        root = osp.join(osp.dirname(pkg.__file__), '.mim', 'configs')
        out |= {(pkg.__name__, f, root) for f in os.listdir(root)
                if f != '_base_' and osp.isdir(osp.join(root, f))}
    return out


def test_zoo_has_one_existing_config_per_folder_or_a_reason():
    tool = _tool()
    covered = {}
    for entry in ZOO:
        config, _ = tool.split_size(entry)
        folder = config.split('/')[0]
        assert folder not in covered, f'{folder} twice: {entry}'
        covered[folder] = config
    for pkg, folder, root in _folders():
        key = f'{pkg}::{folder}'
        assert (key in covered) != (key in SKIPPED), \
            f'{key} should be in the zoo list or skipped with a reason'
        if key in covered:
            path = osp.join(root, covered[key].split('::')[1])
            assert osp.exists(path), f'{covered[key]} is not installed'


def test_detection_list_has_one_config_per_mmdet_folder_or_a_reason():
    import mmdet
    tool = _tool()
    root = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
    covered = {}
    for entry in DETECTION:
        config, size = tool.split_size(entry)
        assert size, f'{entry} has no size'
        folder = config.split('/')[0]
        assert folder not in covered, f'{folder} twice: {entry}'
        covered[folder] = config
        path = osp.join(root, config.split('::')[1])
        assert osp.exists(path), f'{config} is not installed'
    for folder in os.listdir(root):
        if osp.isdir(osp.join(root, folder)):
            key = f'mmdet::{folder}'
            assert (key in covered) != (key in DETECTION_SKIPPED), \
                f'{key} should be in the list or skipped with a reason'
    assert not set(DETECTION_SKIPPED) - {f'mmdet::{f}'
                                         for f in os.listdir(root)}


def test_detectors_get_their_own_section_and_trained_joins_a_record(
        tmp_path):
    tool = _tool()
    checks = dict.fromkeys(('build', 'comb', 'prune', 'masked', 'shape',
                            'smaller', 'flops', 'rebuild', 'onnx'), True)
    det = dict(config='mmdet::retinanet/x.py', ok=True, model='RetinaNet',
               checks=dict(checks), prunable_channels=0.95,
               latency_speedup=1.5, flops_speedup=2.0,
               latency_quartiles=[1.4, 1.6], latency_ms=[3.0, 2.0])
    cls = dict(det, config='mmpretrain::resnet/x.py', model='Classifier',
               prunable_channels=0.5)
    args = tool.parse_args(['--out', str(tmp_path / 'c.json'), '--md',
                            str(tmp_path / 'c.md'), '--round-to', '8'])
    tool.write_reports([cls, det], args)
    text = (tmp_path / 'c.md').read_text()
    head, section = text.split('\n## MMDetection\n')
    assert '`mmpretrain::resnet/x.py`' in head
    assert 'mmdet::' not in head
    assert '`mmdet::retinanet/x.py`' in section
    assert ('1 of 1 models pass every check (1 of them with at least 90% '
            'of their channels prunable)') in section
    assert '1 timed, median latency speedup 1.50x' in section
    assert '| `mmdet::reid` |' in section
    # the trained check alone, on top of the other checks' record
    rec = tool.with_trained(det, dict(checks=dict(trained=True),
                                      trained_diff=0.0, error=None))
    assert rec['ok'] and rec['checks']['trained']
    assert det['checks'] == checks  # the cached record is left as it was
    rec = tool.with_trained(det, dict(checks=dict(trained=False),
                                      error='trained: RuntimeError: x'))
    assert not rec['ok'] and rec['error'] == 'trained: RuntimeError: x'


def test_random_detection_samples_fit_the_image():
    from mmcpd.testing.hook_check import (RandomSamples, _num_classes,
                                          _semantic_classes)
    from mmcpd.utils.config import load_config
    cfg = load_config('mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py')
    assert _num_classes(cfg.model) == 80
    assert _semantic_classes(cfg.model) == 133
    data = RandomSamples((48, 64), 80, task='detection', masks=True,
                         semantic=133)
    for i in range(4):
        item = data[i]
        assert item['inputs'].shape == (3, 48, 64)
        sample = item['data_samples']
        boxes = sample.gt_instances.bboxes.tensor
        assert 1 <= len(boxes) <= 3
        assert (boxes[:, 2:] <= boxes.new_tensor([64, 48])).all()
        assert (boxes[:, 2:] - boxes[:, :2] >= 6).all()
        assert sample.gt_instances.masks.masks.shape == (len(boxes), 48, 64)
        assert sample.gt_instances.labels.max() < 80
        assert sample.gt_sem_seg.sem_seg.max() < 133
        assert sample.metainfo['img_shape'] == (48, 64)


def test_check_model_times_both_models_and_says_why_frozen():
    rec = check_model('mmpretrain::resnet/resnet18_8xb32_in1k.py', 0.3, 32,
                      train_iters=0, latency_runs=20)
    assert rec['ok'], rec.get('error')
    base_ms, pruned_ms = rec['latency_ms']
    assert base_ms > 0 and pruned_ms > 0
    assert rec['latency_speedup'] == pytest.approx(base_ms / pruned_ms,
                                                   rel=1e-2)
    assert rec['flops_speedup'] == pytest.approx(
        rec['flops'] / rec['flops_pruned'], rel=1e-2)
    low, high = rec['latency_quartiles']
    assert 0 < low <= high
    # the classifier's output is what stays (1000 classes, one group)
    assert rec['frozen']['model output'] == [1, 1000]
    table = markdown_table([rec])
    assert 'model output 1000 ch (1 gr.)' in table
    assert f"FLOPs {rec['flops_speedup']:.2f}x" in table


def test_cached_records_are_reused_and_summarised(tmp_path, capsys):
    tool = _tool()
    config = 'mmpretrain::resnet/resnet18_8xb32_in1k.py@32'
    out, md = str(tmp_path / 'cov.json'), str(tmp_path / 'cov.md')
    argv = [config, '--cache', str(tmp_path / 'cache'), '--out', out,
            '--md', md]
    args = tool.parse_args(argv)
    args.round_to = 8
    rec = dict(config=config[:-3], ok=True, model='ImageClassifier X',
               checks={c: True for c in ('build', 'comb')}, groups=3,
               prunable_groups=2, prunable_channels=0.5,
               frozen={'model output': [1, 10]}, latency_speedup=0.9,
               flops_speedup=1.5, latency_quartiles=[0.8, 1.0],
               latency_ms=[1.0, 1.11])
    os.makedirs(tmp_path / 'cache')
    with open(tool.cache_path(args, config), 'w') as f:
        json.dump(rec, f)
    records = tool.main(argv + ['--round-to', '8'])
    assert records == [rec]  # no model was run
    assert 'cached' in capsys.readouterr().out
    with open(md) as f:
        text = f.read()
    assert ('1 of 1 models pass every check (0 of them with at least 90% '
            'of their channels prunable)') in text
    assert ('1 timed, median latency speedup 0.90x, median latency speedup '
            '/ FLOPs speedup 0.60, 1 slower than the original '
            '(ImageClassifier X 0.90x)') in text
    assert '**0.90x** (FLOPs 1.50x; 0.80-1.00)' in text
    # other settings: another cache entry
    other = tool.parse_args(argv + ['--round-to', '1'])
    assert tool.cache_path(other, config) != tool.cache_path(args, config)


RESNET = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'


def test_float64_masked_check_tells_round_off_from_a_wrong_cut():
    import copy

    import torch

    from mmcpd.apis.pruning import comb_model
    from mmcpd.apis import build_model_from_cfg
    from mmcpd.testing.coverage import (MASKED_RTOL_FLOAT64,
                                        masked_check_float64,
                                        random_rounded_units)
    from mmcpd.prune.surgery.mask import zero_units
    from mmcpd.prune.surgery.physical import prune_units
    from mmcpd.prune.surgery.verify import randomize_model
    from mmcpd.utils.config import load_config

    model = randomize_model(build_model_from_cfg(load_config(RESNET)), 0)
    x = torch.randn(1, 3, 32, 32)
    result = comb_model(model, x)
    removed = random_rounded_units(result, model, 0.3, 8)
    masked, wrong = copy.deepcopy(model), copy.deepcopy(model)
    prune_units(model, result, removed)
    zero_units(masked, result, removed)
    assert masked_check_float64(masked, model, result, removed,
                                x) <= MASKED_RTOL_FLOAT64
    assert next(model.parameters()).dtype == torch.float32
    # one more unit zeroed than the pruned model lost: float64 sees it
    gid = next(iter(removed))
    group = next(g for g in result.prunable if g.id == gid)
    kept = [u for u in range(group.num_units) if u not in removed[gid]]
    zero_units(wrong, result, {gid: list(removed[gid]) + kept[:1]})
    assert masked_check_float64(wrong, model, result, removed,
                                x) > MASKED_RTOL_FLOAT64


def test_round_off_fallbacks_pass_only_what_pruning_did_not_worsen(
        monkeypatch):
    import mmcpd.testing.coverage as coverage
    import mmcpd.deploy as deploy

    real_verify, real_match = deploy.verify_onnx, coverage.outputs_match

    def strict_verify(path, model, x, rtol=1e-3, atol=1e-4, **kw):
        # the per-element check fails as on a deep model's round-off
        if (rtol, atol) == (1e-3, 1e-4):
            rtol, atol = 0.0, 0.0
        return real_verify(path, model, x, rtol=rtol, atol=atol, **kw)

    def strict_match(a, b, rtol=1e-3):
        ok, diff = real_match(a, b, rtol)
        return (ok and rtol != 1e-4), diff

    monkeypatch.setattr(deploy, 'verify_onnx', strict_verify)
    monkeypatch.setattr(coverage, 'outputs_match', strict_match)
    rec = check_model(RESNET, 0.3, 32, train_iters=0, latency_runs=0)
    assert rec['ok'], rec.get('error')
    assert rec['masked_diff_float64'] <= coverage.MASKED_RTOL_FLOAT64
    # round-off: far below the masked check's tolerance of the scale
    assert 0 < rec['onnx_error'] < coverage.ONNX_SCALED_RTOL
    assert 'onnx_error_unpruned' not in rec
    table = markdown_table([rec])
    assert 'ok (f64)' in table and 'ok (scaled)' in table
    # beyond that, an export as close as the unpruned model's passes
    monkeypatch.setattr(coverage, 'ONNX_SCALED_RTOL', 0.0)
    rec = check_model(RESNET, 0.3, 32, train_iters=0, latency_runs=0)
    assert rec['ok'], rec.get('error')
    assert rec['onnx_error_unpruned'] > 0
    assert 'ok (as unpruned)' in markdown_table([rec])
    # and one worse than the unpruned model's fails, naming both
    monkeypatch.setattr(coverage, 'ONNX_FLOOR_FACTOR', 0.0)
    rec = check_model(RESNET, 0.3, 32, train_iters=0, latency_runs=0)
    assert not rec['checks']['onnx']
    assert "the unpruned model's export" in rec['error']


def test_a_failed_check_without_an_error_is_named():
    tool = _tool()
    rec = dict(config='x.py', ok=False, error=None,
               checks=dict(build=True, masked=True, flops=False,
                           onnx=True),
               flops_ratio=1.0, flops_ratio_pruned=1.158)
    assert tool.why_failed(rec) == ('failed: flops (comb / mmengine FLOPs '
                                    '1.000 unpruned, 1.158 pruned)')
    rec.update(error='onnx: exporter says no')
    assert tool.why_failed(rec) == 'onnx: exporter says no'
