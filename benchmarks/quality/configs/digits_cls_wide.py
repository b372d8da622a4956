# The larger teacher of the quality benchmark's `*_wide` arms: the
# benchmark's ResNet-18 (./digits_cls.py) at twice the width (32 channels
# in the first stage), trained once like it.
_base_ = ['./digits_cls.py']

model = dict(
    backbone=dict(stem_channels=32, base_channels=32),
    head=dict(in_channels=256))
