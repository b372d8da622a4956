import json

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS as MMENGINE_HOOKS

import mmcpd.hooks  # noqa: F401  (registers CPDHook)
from mmcpd.hooks import CPDHook
from mmcpd.prune.convert import convert_checkpoint
from mmcpd.prune.spec import PrunedSpec, apply_spec
from .toy_runner import ToyClassifier, make_runner

HOOK = dict(type='CPDHook', interval=4, target=0.5, num_steps=3,
            input_shape=(1, 3, 16, 16))


def _student(runner):
    model = runner.model
    return getattr(model, 'student', model)


def _load_deploy(path):
    ckpt = torch.load(path, weights_only=True)
    model = ToyClassifier()
    apply_spec(model, PrunedSpec.from_dict(ckpt['pruned_spec']))
    model.load_state_dict(ckpt['state_dict'])
    return model.eval()


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, CPDHook))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('cpd')
    runner = make_runner(work_dir, HOOK, checkpoint_interval=6)
    runner.train()
    return runner, work_dir


def test_registered_in_mmengine_root_hooks():
    assert MMENGINE_HOOKS.get('CPDHook') is CPDHook


def test_training_prunes_to_target(trained):
    runner, work_dir = trained
    hook = _hook(runner)
    history = hook.history
    assert [h['step'] for h in history] == [0, 1, 2, 3]
    assert [h['iter'] for h in history[1:]] == [4, 8, 12]
    sparsity = [h['sparsity'] for h in history]
    assert sparsity == sorted(sparsity)  # only grows
    assert 0.5 <= sparsity[-1] < 0.6
    # logged through the message hub
    logged = runner.message_hub.get_scalar('train/cpd_sparsity').current()
    assert logged == pytest.approx(sparsity[-1])
    assert (work_dir / 'cpd_pruning.png').stat().st_size > 1000


def test_removed_channels_stay_dead(trained):
    runner, _ = trained
    hook = _hook(runner)
    model = _student(runner)
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    optimizer = runner.optim_wrapper.optimizer
    by_id = {g.id: g for g in hook.comb_result.groups}
    checked = 0
    for gid, units in hook.removed.items():
        for member in by_id[gid].members:
            index = torch.tensor([i for u in units
                                  for i in member.units[u]])
            values = tensors[member.name].index_select(member.dim, index)
            assert values.abs().max() == 0, member.name
            momentum = optimizer.state.get(tensors[member.name], {}).get(
                'momentum_buffer')
            if momentum is not None:
                assert momentum.index_select(member.dim,
                                             index).abs().max() == 0
                checked += 1
    assert checked > 0


def test_deploy_checkpoint_is_small_and_computes_the_same(trained):
    runner, work_dir = trained
    small = _load_deploy(work_dir / 'pruned_deploy.pth')
    masked = _student(runner).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), atol=1e-5,
                                   rtol=1e-4)
    params = sum(p.numel() for p in small.parameters())
    assert params == _hook(runner).history[-1]['params']
    assert params < 0.5 * sum(p.numel() for p in ToyClassifier().parameters())


def test_checkpoints_load_weights_only_and_carry_spec(trained):
    _, work_dir = trained
    ckpt = torch.load(work_dir / 'iter_12.pth', weights_only=True)
    assert ckpt['cpd_hook']['step'] == 3
    spec = PrunedSpec.from_dict(ckpt['pruned_spec'])
    deploy = torch.load(work_dir / 'pruned_deploy.pth', weights_only=True)
    assert spec.shapes == PrunedSpec.from_dict(deploy['pruned_spec']).shapes
    json.dumps(ckpt['cpd_hook']['comb'])  # plain data, no pickled objects


def test_mid_run_checkpoint_converts_to_identical_small_model(
        trained, tmp_path):
    _, work_dir = trained
    out = tmp_path / 'small.pth'
    convert_checkpoint(ToyClassifier(), str(work_dir / 'iter_6.pth'),
                       str(out))
    small = _load_deploy(out)
    masked = ToyClassifier()
    masked.load_state_dict(
        torch.load(work_dir / 'iter_6.pth', weights_only=True)['state_dict'])
    masked.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), atol=1e-5,
                                   rtol=1e-4)
    assert sum(p.numel() for p in small.parameters()) < sum(
        p.numel() for p in masked.parameters())


def test_resume_mid_interval_ends_with_same_architecture(trained, tmp_path):
    runner, work_dir = trained
    # iter 6 is between prune steps 1 and 2: masks and half-gathered
    # importance must both come back
    resumed = make_runner(tmp_path, HOOK, resume=True,
                          load_from=str(work_dir / 'iter_6.pth'),
                          checkpoint_interval=6)
    resumed.train()
    assert _hook(resumed).removed == _hook(runner).removed
    assert [h['iter'] for h in _hook(resumed).history] == [0, 4, 8, 12]


def test_layernorm_groups_masked_exactly(tmp_path):
    # with the conv block ignored, the LayerNorm'd projection is pruned:
    # the masked model must still compute what the small one does
    hook = dict(HOOK, target=0.05, ignore=['block', 'stem'])
    runner = make_runner(tmp_path, hook, max_iters=12)
    runner.train()
    cpd = _hook(runner)
    assert any(g.root == 'proj.weight' for g in cpd.groups
               if cpd.removed.get(g.id))
    small = _load_deploy(tmp_path / 'pruned_deploy.pth')
    x = torch.randn(2, 3, 16, 16)
    model = _student(runner).eval()
    with torch.no_grad():
        cpd._enter_norms()
        try:
            masked = model(x)
        finally:
            cpd._exit_norms()
        torch.testing.assert_close(small(x), masked, atol=1e-5, rtol=1e-4)
        # zeroed channels alone would still count in LayerNorm's statistics
        assert not torch.allclose(small(x), model(x), atol=1e-4)


class _CountSteps(Hook):

    def __init__(self):
        self.counts = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        cpd = _hook(runner)
        self.counts.append(cpd.importance.num_steps)


@pytest.mark.parametrize('accumulate', [1, 2])
def test_importance_counted_once_per_optimizer_step(tmp_path, accumulate):
    runner = make_runner(
        tmp_path, dict(HOOK, num_steps=1), max_iters=4,
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.01),
            accumulative_counts=accumulate))
    counter = _CountSteps()
    runner.register_hook(counter, priority='HIGHEST')
    runner.train()
    # before the prune step at iter 4 resets it
    assert counter.counts[:3] == [(i + 1) // accumulate for i in range(3)]


@pytest.mark.parametrize('kwargs,message', [
    (dict(target=1.2), '`target` should be in \\(0, 1\\), but got 1.2'),
    (dict(interval=0), '`interval`'),
    (dict(importance='hessain'), "`importance`.*'hessain'"),
    (dict(metric='energy'), '`metric`'),
    (dict(rank_by='flop'), '`rank_by`'),
    (dict(act_weight=-1.0), '`act_weight`'),
    (dict(max_ratio=0), '`max_ratio`'),
    (dict(round_to=0), '`round_to`'),
    (dict(num_steps=3, end=20), '`end` or `num_steps`'),
])
def test_bad_config_fails_when_the_runner_is_built(tmp_path, kwargs,
                                                   message):
    with pytest.raises((ValueError, KeyError), match=message):
        make_runner(tmp_path, dict(HOOK, **kwargs))


def test_ignore_pattern_matching_nothing_fails_before_training(tmp_path):
    runner = make_runner(tmp_path, dict(HOOK, ignore=['backbone.*']))
    with pytest.raises(ValueError, match="`ignore`.*'backbone"):
        runner.train()
    assert runner.iter == 0


def test_untraceable_model_fails_before_training(tmp_path):
    # a 1-channel input cannot go through the 3-channel stem
    runner = make_runner(tmp_path, dict(HOOK, input_shape=(1, 1, 16, 16)))
    with pytest.raises(RuntimeError, match='`input_shape`'):
        runner.train()
    assert runner.iter == 0


def test_unreachable_target_names_the_guards(tmp_path):
    runner = make_runner(tmp_path, dict(HOOK, target=0.9, max_ratio=0.3))
    with pytest.raises(ValueError, match='`target` 0.9 cannot be reached'):
        runner.train()


def test_amp_loss_scale_is_removed_at_the_step_hook():
    """CPDHook gathers in the optimizer's step pre-hook: under a GradScaler
    the gradients are unscaled by then, so scores do not depend on the
    loss scale."""
    from mmcpd.prune.importance import HessianImportance

    def scores(scale):
        torch.manual_seed(0)
        model = ToyClassifier()
        groups = _comb_groups(model)
        imp = HessianImportance()
        imp.setup(model, groups)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        opt.register_step_pre_hook(lambda *a: imp.accumulate())
        scaler = torch.amp.GradScaler('cpu', init_scale=scale)
        x = torch.randn(4, 3, 16, 16)
        loss = model(x, torch.tensor([0, 1, 0, 1]), mode='loss')['loss']
        scaler.scale(loss).backward()
        scaler.step(opt)
        return imp.scores()

    plain, scaled = scores(1.0), scores(2.0**12)
    assert _nonzero(plain)
    for gid in plain:
        torch.testing.assert_close(scaled[gid], plain[gid], rtol=1e-4,
                                   atol=0)


def _nonzero(scores):
    return all(float(s.sum()) > 0 for s in scores.values())


def _comb_groups(model):
    from mmcpd.api import comb_model
    return comb_model(model.eval(), torch.randn(1, 3, 16, 16)).prunable


@pytest.mark.parametrize('rank_by', [None, 'latency'])
def test_flops_target_with_round_to_and_cubic_schedule(tmp_path, rank_by):
    hook = dict(HOOK, metric='flops', target=0.4, round_to=4,
                schedule='cubic', importance='taylor', rank_by=rank_by)
    runner = make_runner(tmp_path, hook, max_iters=12)
    runner.train()
    cpd = _hook(runner)
    # ranked by FLOPs or by the latency proxy, the target counts FLOPs
    assert (cpd.rank_cost is None) == (rank_by is None)
    assert 0.4 <= 1 - cpd.history[-1]['flops_ratio'] < 0.5
    # cubic: the first step removes more than a third of the target
    assert 1 - cpd.history[1]['flops_ratio'] > 0.4 / 3
    spec = torch.load(tmp_path / 'pruned_deploy.pth',
                      weights_only=True)['pruned_spec']
    for name, shape in spec['shapes'].items():
        if name.endswith('running_mean'):
            assert shape[0] % 4 == 0, (name, shape)


def test_allow_list_survives_a_safe_load(trained):
    # CPDHook allows mmengine's types for the whole process (resume reads
    # with torch's weights_only default); a load through mmcpd's context
    # manager must not take them away again
    from mmcpd.utils.checkpoint import load_checkpoint_file
    _, work_dir = trained
    load_checkpoint_file(str(work_dir / 'iter_6.pth'))
    ckpt = torch.load(work_dir / 'iter_6.pth', weights_only=True)
    assert 'message_hub' in ckpt
