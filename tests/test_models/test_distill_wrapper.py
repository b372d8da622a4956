"""DistillWrapper on a real MMPretrain classifier and MMSeg segmentor."""
import copy
import socket

import pytest
import torch
import torch.distributed as dist
from mmengine.dataset import pseudo_collate
from mmengine.hub import get_config
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint
from mmengine.structures import PixelData
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmpretrain.structures import DataSample
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample
from torch import nn
from torch.utils.data import DataLoader

from mmcpd.engine.cpd_runner import CPDRunner
from mmcpd.distill import Connector
from mmcpd.models.distill_wrapper import DistillWrapper, unwrap_student


@pytest.fixture(autouse=True)
def _one_thread():
    # The test machine's few cores are shared; two OpenMP threads contending
    # for them made a training step 30x slower than one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cls_cfg(num_classes=10, **backbone):
    cfg = get_config('mmpretrain::_base_/models/resnet18.py').model
    cfg.type = 'mmpretrain.ImageClassifier'
    cfg.head.num_classes = num_classes
    cfg.head.topk = (1, )
    cfg.backbone.update(backbone)
    cfg.data_preprocessor = dict(
        type='ClsDataPreprocessor',
        mean=[125.3, 123.0, 113.9],
        std=[63.0, 62.1, 66.7])
    return cfg.to_dict()


def _mbv2_cfg(widen_factor):
    cfg = get_config('mmpretrain::_base_/models/mobilenet_v2_1x.py')
    cfg = cfg.model
    cfg.type = 'mmpretrain.ImageClassifier'
    cfg.backbone.widen_factor = widen_factor
    cfg.head.update(num_classes=10, in_channels=1280, topk=(1, ))
    return cfg.to_dict()


def _seg_cfg():
    cfg = get_config('mmseg::_base_/models/segformer_mit-b0.py').model
    cfg.type = 'mmseg.EncoderDecoder'
    cfg.data_preprocessor.size = (32, 32)
    cfg.decode_head.update(
        num_classes=4, channels=32, norm_cfg=dict(type='BN'))
    return cfg.to_dict()


def _cls_data(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        inputs=[
            torch.randint(
                0, 256, (3, size, size), generator=g, dtype=torch.uint8)
            for _ in range(n)
        ],
        data_samples=[DataSample().set_gt_label(i % 10) for i in range(n)])


def _seg_data(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 4, (1, size, size), generator=g))
        samples.append(sample)
    inputs = [
        torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        for _ in range(n)
    ]
    return dict(inputs=inputs, data_samples=samples)


def _save(model, path):
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return str(path)


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k], sb[k]) for k in sa)


def _sgd(model):
    return build_optim_wrapper(
        model,
        dict(
            optimizer=dict(
                type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4)))


def test_registered_in_root_and_reachable_from_task_scopes():
    assert ROOT_MODELS.get('DistillWrapper') is DistillWrapper
    assert PRETRAIN_MODELS.get('DistillWrapper') is DistillWrapper
    assert SEG_MODELS.get('DistillWrapper') is DistillWrapper
    model = PRETRAIN_MODELS.build(
        dict(type='DistillWrapper', student=_cls_cfg()))
    assert isinstance(model, DistillWrapper)
    assert [t.key for t in model.terms] == ['loss_kd']
    # one data_preprocessor: the student's
    assert model.data_preprocessor is model.student.data_preprocessor


@pytest.mark.parametrize('scope', [None, 'mmengine', 'mmseg'])
def test_scoped_student_builds_under_any_default_scope(scope):
    """A plain mmengine Runner leaves the ``mmengine`` default scope behind
    it (and an MMSeg one ``mmseg``); a student named
    ``mmpretrain.ImageClassifier`` still finds its unscoped parts
    (``ClsDataPreprocessor``, ``ResNet``) in MMPretrain, outside a runner."""
    with DefaultScope.overwrite_default_scope(scope):
        model = DistillWrapper(_cls_cfg())
        current = DefaultScope.get_current_instance()
    # the default scope is as it was
    assert (current and current.scope_name) == scope
    for net in (model.student, model.teacher):
        assert type(net).__module__.startswith('mmpretrain.')
        assert type(net.data_preprocessor).__name__ == 'ClsDataPreprocessor'
    assert model.data_preprocessor is model.student.data_preprocessor


def test_teacher_is_frozen_and_never_updated():
    model = DistillWrapper(_cls_cfg(), distill_losses=[dict(type='KDLoss')])
    model.init_weights()
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    student_before = copy.deepcopy(model.student.state_dict())
    optim = _sgd(model)
    model.train()
    assert model.student.training and not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    for _ in range(3):
        log = model.train_step(_cls_data(), optim)
    assert {'loss', 'loss_task', 'loss_kd'} <= set(log)
    # the logged total is the sum of the terms, not the student's own loss
    total = float(log['loss_task']) + float(log['loss_kd'])
    assert float(log['loss']) == pytest.approx(total, rel=1e-5)
    teacher_params = {id(p) for p in model.teacher.parameters()}
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not teacher_params & {id(p) for p in optim.optimizer.state}
    # the teacher is the student as it was at step one, and stays so
    assert all(
        torch.equal(v, student_before[k])
        for k, v in model.teacher.state_dict().items())
    assert not all(
        torch.equal(v, teacher_before[k])
        for k, v in model.teacher.state_dict().items())
    assert not _equal(model.student, model.teacher)
    assert not any(p.requires_grad for p in model.teacher.parameters())


def test_teacher_copied_once_after_load_and_not_on_resume(tmp_path):
    trained = PRETRAIN_MODELS.build(_cls_cfg())
    ckpt = _save(trained, tmp_path / 'plain.pth')
    model = DistillWrapper(_cls_cfg())
    model.init_weights()
    # a plain student checkpoint loads into the wrapper (runner load_from)
    load_checkpoint(model, ckpt, strict=True)
    assert _equal(model.student, trained)
    assert not _equal(model.teacher, trained)
    assert not model._teacher_copied
    optim = _sgd(model)
    model.train_step(_cls_data(), optim)
    assert model._teacher_copied
    assert _equal(model.teacher, trained)
    for seed in range(3):
        model.train_step(_cls_data(seed=seed), optim)
    assert _equal(model.teacher, trained)
    assert not _equal(model.student, trained)

    # resume: the checkpoint of the wrapper brings its teacher and the flag
    resumed = DistillWrapper(_cls_cfg())
    resumed.init_weights()
    resumed.load_state_dict(model.state_dict(), strict=True)
    assert resumed._teacher_copied
    resumed.train_step(_cls_data(), _sgd(resumed))
    assert _equal(resumed.teacher, trained)
    assert not _equal(resumed.student, resumed.teacher)


@pytest.mark.parametrize('explicit_teacher', [False, True])
def test_runner_keeps_loaded_weights_in_the_teacher(tmp_path,
                                                    explicit_teacher):
    torch.manual_seed(0)
    trained = PRETRAIN_MODELS.build(_cls_cfg())
    ckpt = _save(trained, tmp_path / 'student.pth')
    model = dict(type='DistillWrapper', student=_cls_cfg())
    if explicit_teacher:
        other = PRETRAIN_MODELS.build(_cls_cfg())
        model['teacher_checkpoint'] = _save(other, tmp_path / 'teacher.pth')
    samples = [
        dict(inputs=x, data_samples=d)
        for x, d in zip(*_cls_data(n=8).values())
    ]
    runner = Runner(
        model=model,
        work_dir=str(tmp_path / 'work'),
        train_dataloader=DataLoader(
            samples, batch_size=4, collate_fn=pseudo_collate),
        train_cfg=dict(by_epoch=False, max_iters=2, val_interval=100),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        load_from=ckpt,
        default_scope='mmpretrain',
        default_hooks=dict(checkpoint=None, logger=None),
        log_level='WARNING')
    runner.train()
    wrapper = runner.model
    expected = other if explicit_teacher else trained
    # not re-initialised by Runner.init_weights, not overwritten by load_from
    assert _equal(wrapper.teacher, expected)
    assert not _equal(wrapper.student, trained)


@pytest.mark.parametrize('runner_cls,paramwise', [(Runner, False),
                                                  (CPDRunner, False),
                                                  (CPDRunner, True)])
def test_cpd_runner_keeps_the_teacher_out_of_the_optimizer(
        tmp_path, runner_cls, paramwise):
    samples = [
        dict(inputs=x, data_samples=d)
        for x, d in zip(*_cls_data(n=4).values())
    ]
    optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
    if paramwise:  # several param groups to filter
        optim_wrapper['paramwise_cfg'] = dict(
            custom_keys={'head': dict(lr_mult=0.1)})
    runner = runner_cls(
        model=dict(type='DistillWrapper', student=_cls_cfg()),
        work_dir=str(tmp_path / 'work'),
        train_dataloader=DataLoader(
            samples, batch_size=4, collate_fn=pseudo_collate),
        train_cfg=dict(by_epoch=False, max_iters=1, val_interval=100),
        optim_wrapper=optim_wrapper,
        default_scope='mmpretrain',
        default_hooks=dict(checkpoint=None, logger=None),
        log_level='ERROR')
    runner.train()
    groups = runner.optim_wrapper.optimizer.param_groups
    in_optim = {id(p) for g in groups for p in g['params']}
    student = {id(p) for p in runner.model.student.parameters()}
    teacher = {id(p) for p in runner.model.teacher.parameters()}
    assert student <= in_optim
    if runner_cls is Runner:
        # what the CPDRunner changes: mmengine's default constructor gives
        # the optimizer every parameter, frozen ones too
        assert teacher <= in_optim
        return
    assert not teacher & in_optim
    assert all(g['params'] for g in groups)
    lrs = {round(g['lr'], 6) for g in groups}
    assert lrs == ({0.01, 0.001} if paramwise else {0.01})


def test_teacher_trained_alongside_learns_its_task_only(tmp_path):
    """``train_teacher=True``: the teacher (the loaded model) is fine-tuned
    on its own task loss in the CPDRunner's optimizer; the distillation
    term reaches the student only."""
    samples = [
        dict(inputs=x, data_samples=d)
        for x, d in zip(*_cls_data(n=4).values())
    ]
    runner = CPDRunner(
        model=dict(type='DistillWrapper', student=_cls_cfg(),
                   train_teacher=True),
        work_dir=str(tmp_path / 'work'),
        train_dataloader=DataLoader(
            samples, batch_size=4, collate_fn=pseudo_collate),
        train_cfg=dict(by_epoch=False, max_iters=1, val_interval=100),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        default_scope='mmpretrain',
        default_hooks=dict(checkpoint=None, logger=None),
        log_level='ERROR')
    model = runner.model
    model.init_weights()
    model.train()
    assert model.teacher.training
    data = model.data_preprocessor(_cls_data(), True)
    losses = model(**data, mode='loss')
    assert {'loss_task', 'teacher_loss', 'loss_kd'} <= set(losses)
    # the copy at step one: teacher and student are the same model, so
    # their task losses are equal, and KD is zero
    assert float(losses['teacher_loss']) == pytest.approx(
        float(losses['loss_task']), rel=1e-5)
    params = dict(model.named_parameters())
    teacher_head = params['teacher.head.fc.weight']
    student_head = params['student.head.fc.weight']
    # KD's gradient reaches the student, never the teacher
    kd_t, kd_s = torch.autograd.grad(
        losses['loss_kd'], [teacher_head, student_head],
        allow_unused=True, retain_graph=True)
    assert kd_t is None and kd_s is not None
    # the teacher's own loss trains the teacher alone
    own_t, own_s = torch.autograd.grad(
        losses['teacher_loss'], [teacher_head, student_head],
        allow_unused=True)
    assert own_t is not None and own_t.abs().sum() > 0 and own_s is None
    before = copy.deepcopy(model.teacher.state_dict())
    runner.train()
    groups = runner.optim_wrapper.optimizer.param_groups
    in_optim = {id(p) for g in groups for p in g['params']}
    assert {id(p) for p in model.teacher.parameters()} <= in_optim
    assert not _equal_state(before, model.teacher.state_dict())
    model.eval()
    assert not model.teacher.training


def _equal_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_predict_and_tensor_modes_are_the_students():
    model = DistillWrapper(_cls_cfg())
    model.eval()
    data = model.data_preprocessor(_cls_data(), training=False)
    inputs, samples = data['inputs'], data['data_samples']
    with torch.no_grad():
        assert torch.equal(
            model(inputs, mode='tensor'), model.student(inputs, mode='tensor'))
        ours = model(inputs, copy.deepcopy(samples), mode='predict')
        theirs = model.student(inputs, copy.deepcopy(samples), mode='predict')
    for a, b in zip(ours, theirs):
        assert torch.equal(a.pred_score, b.pred_score)
    with pytest.raises(RuntimeError, match='Invalid mode "foo"'):
        model(inputs, mode='foo')


def test_classification_kd_falls_in_a_short_run(tmp_path):
    torch.manual_seed(0)
    teacher = PRETRAIN_MODELS.build(_cls_cfg())
    ckpt = _save(teacher, tmp_path / 'teacher.pth')
    torch.manual_seed(1)
    model = DistillWrapper(
        _cls_cfg(),
        teacher_checkpoint=ckpt,
        distill_losses=[dict(type='KDLoss', tau=2.0)],
        keep_task_loss=False)
    model.init_weights()
    assert _equal(model.teacher, teacher)
    optim = build_optim_wrapper(model,
                                dict(optimizer=dict(type='Adam', lr=1e-3)))
    model.train()
    kd = [
        model.train_step(_cls_data(), optim)['loss_kd'].item()
        for _ in range(15)
    ]
    assert kd[0] > 1e-3
    assert sum(kd[-3:]) < 0.2 * sum(kd[:3])
    assert _equal(model.teacher, teacher)


def test_segmentation_cwd_falls_in_a_short_run(tmp_path):
    with DefaultScope.overwrite_default_scope('mmseg'):
        _segmentation_cwd_falls_in_a_short_run(tmp_path)


def _segmentation_cwd_falls_in_a_short_run(tmp_path):
    torch.manual_seed(0)
    teacher = SEG_MODELS.build(_seg_cfg())
    ckpt = _save(teacher, tmp_path / 'teacher.pth')
    torch.manual_seed(1)
    model = DistillWrapper(
        _seg_cfg(),
        teacher_checkpoint=ckpt,
        distill_losses=[dict(type='CWDLoss', tau=1.0, loss_weight=3.0)])
    model.init_weights()
    optim = build_optim_wrapper(model,
                                dict(optimizer=dict(type='AdamW', lr=3e-3)))
    model.train()
    logs = [model.train_step(_seg_data(), optim) for _ in range(20)]
    assert {'decode.loss_ce', 'loss_cwd'} <= set(logs[0])
    cwd = [log['loss_cwd'].item() for log in logs]
    assert sum(cwd[-3:]) < 0.5 * sum(cwd[:3])
    assert _equal(model.teacher, teacher)

    # seg logits are the decode head's, before resizing: (N, 4, H/4, W/4)
    model.eval()
    data = model.data_preprocessor(_seg_data(), training=False)
    with torch.no_grad():
        out = model(data['inputs'], mode='tensor')
        assert out.shape == (2, 4, 8, 8)
        assert torch.equal(out, model.student(data['inputs'], mode='tensor'))
        ours = model(data['inputs'], data['data_samples'], mode='predict')
        theirs = model.student(
            data['inputs'], data['data_samples'], mode='predict')
    assert torch.equal(ours[0].pred_sem_seg.data, theirs[0].pred_sem_seg.data)


def test_feature_connector_trains_with_student_and_is_not_deployed(tmp_path):
    teacher = PRETRAIN_MODELS.build(_mbv2_cfg(1.0))
    ckpt = _save(teacher, tmp_path / 'teacher.pth')
    model = DistillWrapper(
        _mbv2_cfg(0.5),
        teacher=_mbv2_cfg(1.0),
        teacher_checkpoint=ckpt,
        distill_losses=[
            dict(type='KDLoss'),
            dict(type='MSELoss', outputs='backbone.layer7'),
        ],
        probe_shape=(3, 32, 32))
    assert list(model.connectors) == ['loss_feat_backbone_layer7']
    connector = model.connectors['loss_feat_backbone_layer7']
    assert isinstance(connector, Connector)
    assert (connector.in_channels, connector.out_channels) == (160, 320)
    model.train()
    data = model.data_preprocessor(_cls_data(), training=True)
    losses = model(**data, mode='loss')
    assert {'loss_task', 'loss_kd', 'loss_feat_backbone_layer7'} <= set(losses)
    model.parse_losses(losses)[0].backward()
    assert connector.proj.weight.grad.abs().sum() > 0
    assert model.student.backbone.conv1.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())
    deployed = unwrap_student(model).state_dict()
    assert deployed.keys() == model.student.state_dict().keys()
    assert not any('connector' in k or 'teacher' in k for k in deployed)


def test_unwrap_student_through_model_wrappers():
    plain = PRETRAIN_MODELS.build(_cls_cfg())
    model = DistillWrapper(_cls_cfg())
    assert unwrap_student(plain) is plain
    assert unwrap_student(model) is model.student
    assert unwrap_student(nn.DataParallel(model)) is model.student


def test_ddp_copies_teacher_and_unwraps():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)
    try:
        model = DistillWrapper(_cls_cfg())
        loaded = copy.deepcopy(model.student)
        ddp = MMDistributedDataParallel(module=model)
        assert unwrap_student(ddp) is model.student
        # MMDDP calls forward(mode='loss'), not the wrapper's train_step
        log = ddp.train_step(_cls_data(), _sgd(ddp))
        assert 'loss_kd' in log and model._teacher_copied
        assert _equal(model.teacher, loaded)
    finally:
        dist.destroy_process_group()


def test_missing_teacher_checkpoint_is_named(tmp_path):
    path = str(tmp_path / 'no_such_teacher.pth')
    with pytest.raises(FileNotFoundError, match='no_such_teacher.pth'):
        DistillWrapper(_cls_cfg(), teacher_checkpoint=path)


def test_teacher_checkpoint_that_does_not_fit_is_named(tmp_path):
    ckpt = _save(PRETRAIN_MODELS.build(_cls_cfg(100)), tmp_path / 'c100.pth')
    with pytest.raises(ValueError, match='c100.pth.* does not fit'):
        DistillWrapper(_cls_cfg(), teacher_checkpoint=ckpt)
    with pytest.raises(
            ValueError,
            match=r'c100.pth\) predicts 100 classes '
            'but the student 10'):
        DistillWrapper(
            _cls_cfg(), teacher=_cls_cfg(100), teacher_checkpoint=ckpt)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match='`train_teacher`'):
        DistillWrapper(_cls_cfg(), train_teacher='yes')
    with pytest.raises(ValueError, match='needs a `teacher_checkpoint`'):
        DistillWrapper(_cls_cfg(), teacher=_cls_cfg())
    with pytest.raises(ValueError, match='has no submodule `backbone.foo`'):
        DistillWrapper(
            _cls_cfg(),
            distill_losses=[dict(type='MSELoss', outputs='backbone.foo')])
    with pytest.raises(ValueError, match='at least one loss'):
        DistillWrapper(_cls_cfg(), distill_losses=[])
    with pytest.raises(TypeError, match='`keep_task_loss` should be a bool'):
        DistillWrapper(_cls_cfg(), keep_task_loss='no')
