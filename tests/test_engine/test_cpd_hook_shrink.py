"""CPDHook with shrink='physical': the student is cut at every prune step
and trains exactly as the masked one does."""
import pytest
import torch

import mmcpd.engine.hooks  # noqa: F401  (registers CPDHook)
from mmcpd.engine.hooks import CPDHook
from mmcpd.models.distill_wrapper import DistillWrapper
from mmcpd.prune.surgery.positions import removed_positions
from mmcpd.prune.surgery.verify import randomize_model
from .toy_runner import (ShuffleToyClassifier, ToyClassifier, ToyData,
                         make_runner)

# free widths (round_to=1): the toy's narrow layers lose channels
HOOK = dict(type='CPDHook', interval=4, target=0.5, num_steps=2,
            round_to=1, input_shape=(1, 3, 16, 16))
ADAMW = dict(
    optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'fc': dict(lr_mult=0.1, decay_mult=0.5),
        'norm': dict(decay_mult=0.0)
    }))


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, CPDHook))


def _model(kind='toy'):
    torch.manual_seed(0)
    model = ShuffleToyClassifier() if kind == 'shuffle' else ToyClassifier()
    return randomize_model(model, seed=1)


def _losses(runner):
    return runner.message_hub.get_scalar('train/loss').data[0]


def _run(tmp_path, shrink, max_iters=12, model=None, **kwargs):
    runner = make_runner(
        tmp_path / shrink, dict(HOOK, shrink=shrink), max_iters=max_iters,
        model=model if model is not None else _model(), **kwargs)
    runner.train()
    return runner


def _kept(tensor, positions):
    """The kept entries; ``(dim, groups)`` keys count a grouped conv's
    input channels over its conv groups (per row, rows selected after)."""
    for key in sorted(positions, key=lambda k: isinstance(k, int)):
        dead = positions[key]
        if isinstance(key, tuple):
            dim, groups = key
            width, rows = tensor.shape[dim], tensor.shape[0] // groups
            tensor = torch.stack([
                tensor[r][[j for j in range(width)
                           if r // rows * width + j not in dead]]
                for r in range(tensor.shape[0])
            ])
            continue
        keep = [i for i in range(tensor.shape[key]) if i not in dead]
        tensor = tensor.index_select(key, torch.tensor(keep))
    return tensor


def _positions(hook):
    """Removed positions by tensor name, then dim (``(dim, groups)`` where
    they count over a grouped conv's conv groups)."""
    split = {(m.name, m.dim): m.groups for g in hook.session.comb.groups
             for m in g.members if m.groups > 1}
    positions = {}
    for (name, dim), dead in removed_positions(hook.session.comb.groups,
                                               hook.session.removed).items():
        key = (dim, split[(name, dim)]) if (name, dim) in split else dim
        positions.setdefault(name, {})[key] = dead
    return positions


def _check_follows(masked_runner, cut_runner, masked, cut):
    """Weights and optimizer state of ``cut`` are the kept entries of
    ``masked``'s; the optimizers' param groups kept their settings."""
    positions = _positions(_hook(masked_runner))
    opt_m = masked_runner.optim_wrapper.optimizer
    opt_c = cut_runner.optim_wrapper.optimizer
    params_m = dict(masked.named_parameters())
    states = 0
    for name, param in cut.named_parameters():
        full = params_m[name]
        torch.testing.assert_close(
            param, _kept(full, positions.get(name, {})), rtol=1e-4,
            atol=1e-5)
        for key, value in opt_c.state[param].items():
            if torch.is_tensor(value) and value.dim():
                torch.testing.assert_close(
                    value, _kept(opt_m.state[full][key],
                                 positions.get(name, {})),
                    rtol=1e-3, atol=1e-6)
                states += 1
    assert states > 0
    for g_m, g_c in zip(opt_m.param_groups, opt_c.param_groups):
        assert {k: v for k, v in g_m.items() if k != 'params'} == {
            k: v for k, v in g_c.items() if k != 'params'}
        assert [p.shape for p in g_c['params']] == [
            _kept(p, positions.get(n, {})).shape
            for p in g_m['params'] for n in [_name(masked, p)]]


def _name(model, param):
    return next(n for n, p in model.named_parameters() if p is param)


@pytest.mark.parametrize('optim,kind', [('sgd', 'toy'), ('adamw', 'toy'),
                                        ('sgd', 'shuffle')])
def test_physical_equals_masked(tmp_path, optim, kind):
    """Also with ShuffleNet V1's units, whose grouped convs keep other
    input columns in each conv group (with SGD: AdamW turns the round-off
    gradients of its conv biases before BatchNorm into whole steps)."""
    kwargs = dict(optim_wrapper=ADAMW) if optim == 'adamw' else {}
    # the deeper net drifts by round-off: checked just after the last cut
    iters = 9 if kind == 'shuffle' else 12
    masked = _run(tmp_path, 'mask', iters, model=_model(kind), **kwargs)
    cut = _run(tmp_path, 'physical', iters, model=_model(kind), **kwargs)
    assert _hook(cut).session.removed == _hook(masked).session.removed != {}
    if kind == 'shuffle':  # a cut group keeps other columns per conv group
        hook = _hook(cut)
        assert any(m.groups > 1 for g in hook.session.comb.groups
                   if hook.session.removed.get(g.id) for m in g.members)
    assert [h['params'] for h in _hook(cut).session.history] == [
        h['params'] for h in _hook(masked).session.history]
    # the student really is small, and trained as the masked one did
    n_cut = sum(p.numel() for p in cut.model.parameters())
    assert n_cut == _hook(cut).session.history[-1]['params']
    assert n_cut < sum(p.numel() for p in masked.model.parameters())
    torch.testing.assert_close(_losses(cut), _losses(masked), rtol=1e-4,
                               atol=1e-5)
    _check_follows(masked, cut, masked.model, cut.model)
    # deploy checkpoints agree
    small = torch.load(tmp_path / 'physical' / 'pruned_deploy.pth',
                       weights_only=True)
    ref = torch.load(tmp_path / 'mask' / 'pruned_deploy.pth',
                     weights_only=True)
    assert small['pruned_spec'] == ref['pruned_spec']
    for key, value in ref['state_dict'].items():
        torch.testing.assert_close(small['state_dict'][key], value,
                                   rtol=1e-4, atol=1e-5)


def test_ema_and_gradient_accumulation_follow(tmp_path):
    def run(shrink):
        cpd = dict(HOOK, shrink=shrink)
        runner = make_runner(
            tmp_path / shrink, cpd, max_iters=12, model=_model(),
            custom_hooks=[dict(type='EMAHook', momentum=0.1), cpd],
            optim_wrapper=dict(
                optimizer=dict(type='SGD', lr=0.05, momentum=0.9),
                accumulative_counts=2))
        runner.train()
        return runner

    masked, cut = run('mask'), run('physical')
    torch.testing.assert_close(_losses(cut), _losses(masked), rtol=1e-4,
                               atol=1e-5)
    _check_follows(masked, cut, masked.model, cut.model)
    ema_m, ema_c = ([h for h in r.hooks if type(h).__name__ == 'EMAHook'][0]
                    for r in (masked, cut))
    # the EMA copy is cut alike: its weights are the masked EMA's kept ones
    positions = _positions(_hook(masked))
    full = dict(ema_m.ema_model.module.named_parameters())
    for name, param in ema_c.ema_model.module.named_parameters():
        torch.testing.assert_close(
            param, _kept(full[name], positions.get(name, {})), rtol=1e-4,
            atol=1e-5)


def test_amp_bf16_run_shrinks_and_trains(tmp_path, monkeypatch):
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp
    # its constructor insists on a GPU; the step logic runs on CPU as is
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    model = _model()
    wrapper = amp.AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        loss_scale=1024.0, dtype='bfloat16')
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=1024.0)
    runner = _run(tmp_path, 'physical', max_iters=10, model=model,
                  optim_wrapper=wrapper)
    hook = _hook(runner)
    assert hook.session.removed
    assert sum(p.numel() for p in model.parameters()) == \
        hook.session.history[-1]['params']
    # the optimizer steps the cut parameters, with their momentum
    params = {id(p) for g in wrapper.optimizer.param_groups
              for p in g['params']}
    assert params == {id(p) for p in model.parameters()}
    assert all(wrapper.optimizer.state[p]['momentum_buffer'].shape == p.shape
               for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(_losses(runner))))


def test_resume_rebuilds_the_cut_student(tmp_path):
    full = _run(tmp_path, 'physical', max_iters=12, checkpoint_interval=6)
    resumed = make_runner(
        tmp_path / 'resumed', dict(HOOK, shrink='physical'), max_iters=12,
        model=_model(), resume=True,
        load_from=str(tmp_path / 'physical' / 'iter_6.pth'),
        checkpoint_interval=6)
    resumed.train()
    assert _hook(resumed).session.removed == _hook(full).session.removed
    state_a = full.model.state_dict()
    state_b = resumed.model.state_dict()
    assert {k: v.shape for k, v in state_a.items()} == {
        k: v.shape for k, v in state_b.items()}
    for key, value in state_a.items():
        torch.testing.assert_close(state_b[key], value, rtol=1e-4,
                                   atol=1e-5)


class _SampleData(ToyData):
    """ToyData with the labels as ``data_samples``, as DistillWrapper
    passes them on."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return dict(inputs=item['inputs'], data_samples=item['labels'])


def test_distillation_feature_terms_follow_the_cut(tmp_path):
    def wrapper():
        return DistillWrapper(
            student=_model(),
            distill_losses=[
                dict(type='MSELoss', outputs='stem', loss_weight=1.0),
                dict(type='MSELoss', outputs='proj', loss_weight=1.0)
            ],
            probe_shape=(3, 16, 16))

    loader = dict(
        dataset=_SampleData(), batch_size=4,
        sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
        collate_fn=dict(type='default_collate'))
    masked = _run(tmp_path, 'mask', model=wrapper(),
                  train_dataloader=loader)
    cut = _run(tmp_path, 'physical', model=wrapper(),
               train_dataloader=loader)
    assert _hook(cut).session.removed == _hook(masked).session.removed != {}
    assert len(cut.model.connectors) > 0
    for key in ('loss_feat_stem', 'loss_feat_proj'):
        a = cut.message_hub.get_scalar(f'train/{key}').data[0]
        b = masked.message_hub.get_scalar(f'train/{key}').data[0]
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(_losses(cut), _losses(masked), rtol=1e-4,
                               atol=1e-5)


def test_bad_shrink_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match='`shrink` should be one of'):
        make_runner(tmp_path, dict(HOOK, shrink='prune'))
