import json

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS as MMENGINE_HOOKS

import mmcpd.engine.hooks  # noqa: F401  (registers CPDHook)
from mmcpd.engine.hooks import CPDHook
from mmcpd.apis.convert import convert_checkpoint
from mmcpd.prune.spec import PrunedSpec, apply_spec
from tests.test_prune.toy import linear_table
from .toy_runner import ToyClassifier, make_runner

# masks: these tests read the removed entries of the full-size student
HOOK = dict(type='CPDHook', interval=4, target=0.5, num_steps=3,
            input_shape=(1, 3, 16, 16), shrink='mask')


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
    history = hook.session.history
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
    by_id = {g.id: g for g in hook.session.comb.groups}
    checked = 0
    for gid, units in hook.session.removed.items():
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
    assert params == _hook(runner).session.history[-1]['params']
    assert params < 0.5 * sum(p.numel() for p in ToyClassifier().parameters())


def test_checkpoints_load_weights_only_and_carry_spec(trained):
    _, work_dir = trained
    ckpt = torch.load(work_dir / 'iter_12.pth', weights_only=True)
    assert ckpt['cpd_hook']['session']['step'] == 3
    spec = PrunedSpec.from_dict(ckpt['pruned_spec'])
    deploy = torch.load(work_dir / 'pruned_deploy.pth', weights_only=True)
    assert spec.shapes == PrunedSpec.from_dict(deploy['pruned_spec']).shapes
    json.dumps(ckpt['cpd_hook'])  # plain data, no pickled objects


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
    assert _hook(resumed).session.removed == _hook(runner).session.removed
    assert [h['iter'] for h in _hook(resumed).session.history] == [0, 4, 8, 12]


def test_layernorm_groups_masked_exactly(tmp_path):
    # with the conv block ignored, the LayerNorm'd projection is pruned:
    # the masked model must still compute what the small one does
    hook = dict(HOOK, target=0.05, ignore=['block', 'stem'])
    runner = make_runner(tmp_path, hook, max_iters=12)
    runner.train()
    cpd = _hook(runner)
    assert any(g.root == 'proj.weight' for g in cpd.session.groups
               if cpd.session.removed.get(g.id))
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
        self.counts.append(cpd.session.importance.num_steps)


@pytest.mark.parametrize('clip', [None, dict(max_norm=1.0)])
@pytest.mark.parametrize('accumulate', [1, 2])
def test_importance_counted_once_per_optimizer_step(tmp_path, accumulate,
                                                    clip):
    runner = make_runner(
        tmp_path, dict(HOOK, num_steps=1), max_iters=4,
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.01),
            accumulative_counts=accumulate, clip_grad=clip))
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
    (dict(latency_table='table.json'), '`latency_table`'),
    (dict(max_ratio=0), '`max_ratio`'),
    (dict(round_to=0), '`round_to`'),
    (dict(num_steps=3, end=20), '`end` or `num_steps`'),
    (dict(forward='tests.no_such_module.run'), "`forward`='tests.no_such"),
    (dict(forward='comb'), '`forward` should be a callable'),
])
def test_bad_config_fails_when_the_runner_is_built(tmp_path, kwargs,
                                                   message):
    with pytest.raises((ValueError, KeyError, TypeError, ImportError),
                       match=message):
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


# Gradient reading: the runs below train with lr = 0, so that the weights
# (and so the gradients) of every run stay the same whatever its wrapper
# does to the step; the scores then differ only by how they are read.
ITERS = 4


class _RecordScores(Hook):
    """The importance scores after every iteration, flat, before CPDHook's
    prune step resets them (this hook runs first)."""
    priority = 'HIGHEST'

    def __init__(self):
        self.scores = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        scores = _hook(runner).session.importance.scores()
        self.scores.append(torch.cat([scores[k] for k in sorted(scores)]))


class _ReadAfterClip(Hook):
    """A second Hessian score read in the optimizer's step pre-hook, i.e.
    after the wrapper clipped the gradients (what CPDHook must not do)."""
    priority = 'LOWEST'  # after CPDHook combed the model

    def before_train(self, runner):
        from mmcpd.prune.importance import HessianImportance
        cpd = _hook(runner)
        self.importance = HessianImportance()
        self.importance.setup(cpd.student, cpd.session.groups)
        runner.optim_wrapper.optimizer.register_step_pre_hook(
            lambda *args: self.importance.accumulate())

    def flat(self):
        scores = self.importance.scores()
        return torch.cat([scores[k] for k in sorted(scores)])


class _Poison(Hook):
    """Sets ``model.poison`` during iteration ``at`` only."""

    def __init__(self, model, at):
        self.model, self.at = model, at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.model.poison = runner.iter == self.at


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.0)


def _amp(model, monkeypatch, **kwargs):
    """mmengine's AmpOptimWrapper, bfloat16 autocast, loss scale 1024."""
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp
    # its constructor insists on a GPU; the step logic runs on CPU as is
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    wrapper = amp.AmpOptimWrapper(
        optimizer=_sgd(model), loss_scale=1024.0, dtype='bfloat16',
        **kwargs)
    # mmengine 0.10.7 builds torch.cuda.amp.GradScaler, which disables
    # itself without CUDA; torch's CPU GradScaler scales for real.
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=1024.0)
    return wrapper


def _train(tmp_path, name, optim_wrapper, *hooks, poison_iter=None):
    """Train ToyClassifier ITERS iterations with CPDHook (one prune step at
    the end); ``optim_wrapper(model)`` builds the wrapper. Returns the
    runner and the recorded scores."""
    torch.manual_seed(0)
    model = ToyClassifier()
    model.poison = False
    if poison_iter is not None:  # a NaN in one gradient at that iteration
        model.stem[0].weight.register_hook(
            lambda g: g * float('nan') if model.poison else g)
    runner = make_runner(
        tmp_path / name,
        dict(HOOK, interval=ITERS, num_steps=1),
        max_iters=ITERS,
        model=model,
        optim_wrapper=optim_wrapper(model),
        experiment_name=f'read_grads_{name}')
    record = _RecordScores()
    runner.register_hook(record)
    for hook in hooks:
        runner.register_hook(hook)
    if poison_iter is not None:
        runner.register_hook(_Poison(model, poison_iter))
    runner.train()
    return runner, record.scores


@pytest.mark.parametrize('clip', [False, True])
def test_amp_scores_equal_fp32_scores(tmp_path, monkeypatch, clip):
    """Real CPDHook under mmengine's AmpOptimWrapper: the loss scale
    (1024, so 1024**2 on the squared scores) is removed before the scores
    are read, also when the wrapper unscales only to clip."""
    from mmengine.optim import OptimWrapper
    _, fp32 = _train(tmp_path, 'fp32',
                     lambda m: OptimWrapper(optimizer=_sgd(m)))
    kwargs = dict(clip_grad=dict(max_norm=1e-3)) if clip else {}
    _, amp = _train(tmp_path, 'amp',
                    lambda m: _amp(m, monkeypatch, **kwargs))
    fp32, amp = fp32[-1], amp[-1]
    assert (fp32 > 0).all()
    # bfloat16 keeps 8 significant bits, so activations and gradients are
    # each off by ~2**-9 relative and a unit's squared sum by a few 2**-9;
    # units whose sum cancels are off by more relative to themselves, so
    # the bound is on the error against the largest score (measured: 0.6%
    # of it, total 0.3%). A loss scale left in would multiply by 1024**2.
    torch.testing.assert_close(amp, fp32, rtol=0.05,
                               atol=0.02 * float(fp32.max()))
    assert float(amp.sum() / fp32.sum()) == pytest.approx(1, abs=0.02)


def test_scores_are_read_before_gradient_clipping(tmp_path):
    from mmengine.optim import OptimWrapper
    _, plain = _train(tmp_path, 'plain',
                      lambda m: OptimWrapper(optimizer=_sgd(m)))
    after_clip = _ReadAfterClip()
    runner, clipped = _train(
        tmp_path, 'clipped',
        lambda m: OptimWrapper(
            optimizer=_sgd(m), clip_grad=dict(max_norm=1e-4)),
        after_clip)
    assert (plain[-1] > 0).all()
    torch.testing.assert_close(clipped[-1], plain[-1], rtol=1e-6, atol=0)
    # the clipping was real: read after it, the scores shrink by the clip
    # factor squared
    assert float(after_clip.flat().sum()) < 1e-4 * float(plain[-1].sum())
    # and the wrapper is left as it was
    assert '_clip_grad' not in vars(runner.optim_wrapper)


def test_step_with_nan_gradient_is_left_out_of_the_scores(
        tmp_path, monkeypatch, recwarn):
    """A NaN gradient at iteration 1 under AMP with clipping (GradScaler
    skips the optimizer step, the importance must skip it too)."""
    clip = dict(clip_grad=dict(max_norm=1e3))
    _, clean = _train(tmp_path, 'clean',
                      lambda m: _amp(m, monkeypatch, **clip))
    recwarn.clear()
    runner, poisoned = _train(tmp_path, 'poisoned',
                              lambda m: _amp(m, monkeypatch, **clip),
                              poison_iter=1)
    without_iter_1 = clean[-1] - (clean[1] - clean[0])
    assert torch.isfinite(poisoned[-1]).all()
    torch.testing.assert_close(poisoned[-1], without_iter_1, rtol=1e-5,
                               atol=1e-6 * float(clean[-1].max()))
    torch.testing.assert_close(poisoned[1], clean[0], rtol=0, atol=0)
    cpd = _hook(runner)
    assert cpd.session.importance.skipped_steps == 1
    assert runner.message_hub.get_scalar(
        'train/cpd_skipped_steps').current() == 1
    assert cpd.session.state_dict()['pruner']['importance'][
        'skipped_steps'] == 1
    skips = [w for w in recwarn if 'NaN or inf' in str(w.message)]
    assert len(skips) == 1, [str(w.message) for w in recwarn]


def test_latency_target_counts_a_measured_table(tmp_path, monkeypatch):
    monkeypatch.setenv('MMCPD_CACHE', str(tmp_path / 'cache'))
    table = dict(threads=1, points=2, budget_s=0.01)
    hook = dict(HOOK, metric='latency', target=0.3, latency_table=table,
                closed_loop=False)
    runner = make_runner(tmp_path, hook, max_iters=12)
    runner.train()
    cpd = _hook(runner)
    # the table was measured once and cached; the target is its latency
    assert len(list((tmp_path / 'cache' / 'latency').glob('*.json'))) == 1
    assert cpd.session.pruner.cost.metric == 'latency'
    assert cpd.session.pruner.cost.total(
        cpd.session.removed) <= 0.7 * cpd.session.pruner.cost.total() + 1e-9


def test_latency_target_is_met_on_the_measured_latency(tmp_path):
    full = sum(p.numel() for p in ToyClassifier().parameters())
    calls = []

    def measure(model):  # what the table does not predict: an overhead
        calls.append(model.training)
        return 0.4 + 0.6 * sum(p.numel() for p in model.parameters()) / full

    hook = dict(HOOK, metric='latency', target=0.3,
                latency_table=linear_table(ToyClassifier(),
                                           torch.randn(1, 3, 16, 16), 4),
                round_to=1, closed_loop=dict(measure=measure, tol=0.03))
    runner = make_runner(tmp_path, hook, max_iters=12)
    runner.train()
    cpd = _hook(runner)
    last = cpd.session.history[-1]
    # the last step re-targeted until the measured latency met the target
    assert abs(0.7 / last['latency_ratio'] - 1) <= 0.03
    assert last['sparsity'] == pytest.approx(1 - last['latency_ratio'])
    # one measurement at each earlier step, up to 4 at the last, of
    # candidates in eval mode, all remembered for the next steps and a
    # resume
    assert 3 <= len(calls) <= 2 + 4 and not any(calls)
    assert all('latency_ratio' in r for r in cpd.session.history[1:])
    state = cpd.session.state_dict()
    assert len(state['loop']['points']) == len(calls)
    assert state['cost']['calibration'] == [
        cpd.session.pruner.cost.k_layers, cpd.session.pruner.cost.k_rest,
        cpd.session.pruner.cost.fixed
    ]
    small, _ = cpd.session.small(cpd.student)
    assert measure(small) == pytest.approx(last['latency_ratio'])


@pytest.mark.parametrize('rank_by', [None, 'latency_proxy'])
def test_flops_target_with_round_to_and_cubic_schedule(tmp_path, rank_by):
    hook = dict(HOOK, metric='flops', target=0.4, round_to=4,
                schedule='cubic', importance='taylor', rank_by=rank_by)
    runner = make_runner(tmp_path, hook, max_iters=12)
    runner.train()
    cpd = _hook(runner)
    # ranked by FLOPs or by the latency proxy, the target counts FLOPs
    assert (cpd.session.pruner.rank_cost is None) == (rank_by is None)
    assert 0.4 <= 1 - cpd.session.history[-1]['flops_ratio'] < 0.5
    # cubic: the first step removes more than a third of the target
    assert 1 - cpd.session.history[1]['flops_ratio'] > 0.4 / 3
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


class _RngState(Hook):
    """The global random state when ``before_train`` reaches this hook."""

    def __init__(self, priority):
        self.priority = priority
        self.state = None

    def before_train(self, runner):
        self.state = torch.get_rng_state()


@pytest.mark.parametrize('shrink', ['physical', 'mask'])
def test_before_train_draws_only_the_comb_input(tmp_path, shrink):
    """Without a latency target the hook draws one random input (the comb's)
    and nothing else from the global stream that dropout draws from."""
    runner = make_runner(tmp_path, dict(HOOK, shrink=shrink), max_iters=1)
    first, last = _RngState('HIGHEST'), _RngState('LOWEST')
    runner.register_hook(first)
    runner.register_hook(last)
    runner.train()
    torch.set_rng_state(first.state)
    torch.randn(HOOK['input_shape'])
    assert torch.equal(torch.get_rng_state(), last.state)


FORWARD_CALLS = []


def recording_forward(model, inputs):
    """A forward override: what a config names by import path."""
    FORWARD_CALLS.append(tuple(inputs.shape))
    return model(inputs, mode='tensor')


def test_forward_override_by_import_path(tmp_path):
    FORWARD_CALLS.clear()
    path = f'{__name__}.recording_forward'
    runner = make_runner(tmp_path, dict(HOOK, forward=path), max_iters=4)
    assert _hook(runner).forward is recording_forward
    runner.train()
    # the comb traced and verified the student through it
    assert FORWARD_CALLS and set(FORWARD_CALLS) == {HOOK['input_shape']}
    assert _hook(runner).session.removed
