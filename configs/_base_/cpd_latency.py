# CPD to a measured latency target, without distillation: ./cpd_hook.py with
# `metric='latency'`. Inherit it next to your model's config:
#   _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py',
#             'mmcpd::_base_/cpd_latency.py']
#   cpd = dict(target=0.5)   # half the latency measured on this machine
# A per-layer latency table of this machine (measured once and cached,
# ~/.cache/mmcpd/latency) ranks the units by importance per measured ms
# saved; at every prune step the student is exported and timed against the
# unpruned one in onnxruntime until the measured speedup is within `tol` of
# the target (docs/deploy.md). Measure on the machine (and thread count)
# you deploy to, while it runs nothing else. With distillation, inherit
# ./cpd_kd.py or ./cpd_cwd.py instead and set these two keys of `cpd` in
# your config (a key may come from one base only).
_base_ = ['./cpd_hook.py']

cpd = dict(
    metric='latency',
    # importance per measured latency saved, not the FLOPs proxy
    rank_by=None,
    # whole AVX2 blocks where the table allows a narrower width (as before
    # the CPD bases' FLOPs default became 4)
    round_to=8,
    # onnxruntime's CPU provider with the cores this process may use; e.g.
    # dict(threads=4, provider='cuda') for another deploy target
    latency_table=dict(provider='cpu'),
    # the measured speedup within 3% of the target's, at most 4 exports a
    # step
    closed_loop=dict(tol=0.03, rounds=4))
