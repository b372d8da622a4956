# Transfer benchmark (../transfer.py), segmentation: the demo UNet (4
# stages of 16 to 128 channels, FCN head) on 24x24 colour canvases with 1-3
# shapes (disc, square, triangle, plus; 5 classes with the background) on a
# coloured 1/f-noise background, Gaussian noise (std 0.1). Trained from
# scratch for 1500 iterations (transfer.py).
_base_ = ['../../../configs/demo/unet-s4-d8_fcn_1xb16_digits-seg.py']

custom_imports = dict(imports=['mmcpd', 'synth'], allow_failed_imports=False)
size = 24
data = dict(type='ShapesSegDataset', img_size=size, noise_std=0.1, seed=0)
data_preprocessor = dict(
    mean=[120.0] * 3, std=[57.0] * 3, size=(size, size))
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        num_classes=5,
        loss_decode=dict(class_weight=[0.3] + [1.0] * 4)))
train_dataloader = dict(
    dataset=dict(_delete_=True, split='train', num_samples=1000,
                 pipeline=[dict(type='PackSegInputs')], **data))
val_dataloader = dict(
    dataset=dict(_delete_=True, split='val', num_samples=200,
                 pipeline=[dict(type='PackSegInputs')], **data))
test_dataloader = val_dataloader
