# CPD on the transfer benchmark's ./shapes32_r50_cls.py (zoo ResNet-50 on
# 32 px shapes): the fine-tuning of ./cpd_shapes32_mbv2_cls.py (the CPD
# bases' settings, a tenth of the learning rate, 200 iterations) with the
# ResNet-50 of ./shapes32_r50_cls.py; transfer.py sets each arm.
_base_ = ['./cpd_shapes32_mbv2_cls.py']

# ResNet's defaults: 4 stages, pytorch style
model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=50, out_indices=(3, )),
    head=dict(in_channels=2048))
