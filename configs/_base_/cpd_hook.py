# CPD pruning: the CPDHook with sensible defaults. Inherit it next to your
# model's config to prune while training (see docs/cpd_configs.md):
#   _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py',
#             'mmcpd::_base_/cpd_hook.py']
# mmcpd's classes are named by import path (`mmcpd.hooks.CPDHook`), which
# mmengine's registries import on first use: no `custom_imports` is needed,
# so this file combines with configs that have their own.
# Override by redefining the list in your config, e.g.
#   custom_hooks = [dict(type='mmcpd.hooks.CPDHook', interval=500,
#                        target=0.6, input_shape=(1, 3, 512, 512))]
custom_hooks = [
    dict(
        type='mmcpd.hooks.CPDHook',
        # a prune step every `interval` iterations, from `start` on; with
        # neither `end` nor `num_steps`, the target is reached at half of
        # the training iterations and the rest fine-tunes the pruned model
        interval=100,
        # remove half of the FLOPs (the demo's and a typical CPD target)
        target=0.5,
        metric='flops',
        # the paper's Hessian (Group-Fisher) importance
        importance='hessian',
        schedule='linear',
        # keep widths that CPU and GPU kernels like (multiples of 8)
        round_to=8,
        # rank units by importance per latency proxy (FLOPs + memory
        # traffic of the activations a channel writes) while the target
        # counts FLOPs: latency follows FLOPs closer (docs/deploy.md)
        rank_by='latency',
        min_channels=8,
        max_ratio=0.9,
        # the example input used to find the coupled groups
        input_shape=(1, 3, 224, 224),
        deploy_file='pruned_deploy.pth',
        plot_file='cpd_pruning.png')
]
