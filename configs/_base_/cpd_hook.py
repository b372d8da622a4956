# CPD pruning without distillation: the `cpd` settings, which mmcpd's
# CPDRunner (`runner_type`) turns into a CPDHook appended to your config's
# own `custom_hooks`. Inherit it next to your model's config to prune while
# training (see docs/cpd_configs.md):
#   _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py',
#             'mmcpd::_base_/cpd_hook.py']
# Change one setting in your config, the others stay, e.g.
#   cpd = dict(target=0.7)
# mmcpd's classes are named by import path, which mmengine's registries
# import on first use: no `custom_imports` is needed, and this file sets no
# key that OpenMMLab configs set (mmengine refuses a key in two bases).
runner_type = 'mmcpd.engine.cpd_runner.CPDRunner'
cpd = dict(
    # a prune step every `interval` iterations, from `start` on; with
    # neither `end` nor `num_steps`, the target is reached at a quarter of
    # the training iterations and the rest fine-tunes the pruned model
    interval=100,
    # remove half of the FLOPs (the demo's and a typical CPD target); or
    # half of the latency measured on this machine (a per-layer latency
    # table, measured once and cached, ranks the units; the pruned student
    # is exported and timed against the unpruned one at every prune step
    # until the measured speedup is within 3% of the target, docs/deploy.md):
    #   cpd = dict(metric='latency', rank_by=None,
    #              latency_table=dict(threads=4, provider='cpu'),
    #              closed_loop=dict(tol=0.03, rounds=4))
    target=0.5,
    metric='flops',
    # the paper's Hessian (Group-Fisher) importance
    importance='hessian',
    schedule='linear',
    # widths and ranking chosen by the worst case over the transfer
    # benchmark's tasks against Torch-Pruning and ModelOpt FastNAS
    # (docs/quality/transfer.md): multiples of 4 keep CPU kernels in their
    # blocked layout (grouped convolutions keep blocks of 8 per group)
    # while leaving narrow layers room; `round_to=8` keeps whole AVX2
    # blocks everywhere (more latency bought, more accuracy paid)
    round_to=4,
    # rank units by importance per FLOP saved (the target's metric); or by
    # importance per latency proxy (FLOPs + memory traffic of the
    # activations a channel writes): rank_by='latency_proxy'
    rank_by=None,
    min_channels=1,
    max_ratio=0.9,
    # the example input that finds the coupled groups; None: the size the
    # config gives (the pre-processor's `size` / `crop_size`, else the
    # crop of the test or train pipeline), logged at the start
    input_shape=None,
    # written to work_dir after training: the small model (a normal
    # checkpoint with the `pruned_deploy.py` config written beside it) and
    # a plot of params, FLOPs and the val metric
    deploy_file='pruned_deploy.pth',
    plot_file='cpd_pruning.png')
