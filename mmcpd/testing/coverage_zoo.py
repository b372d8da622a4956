"""The coverage list: one supervised config per architecture folder.

One config (the smallest variant) of every architecture folder of the
installed MMPretrain 1.2 and MMSegmentation 1.2.2 (``.mim/configs``), as
``'pkg::folder/config.py@SIZE'`` (``@SIZE``: the input size; without it the
coverage tool's ``--size`` or the config's own). The first 40 are the list
the coverage table has run since the oracle was written (kept so that runs
compare); the rest were added by folder. :data:`SKIPPED` names each folder
that has no supervised classifier or segmentor of its own, and why.

Sizes: classification at 128x128, or 224 where the model holds a fixed
token grid or window (position tables, relative position biases, windows
of 7) or a fixed classifier (VGG's 7x7), segmentation at 128, or 192
where pyramid pooling needs a map divisible by 6; LeNet-5 at 32 (1
channel), EVA-L at 112; MMSeg's BEiT and MAE at their crop sizes (640,
512: their relative position tables are made for it), which makes them by
far the slowest entries.
"""

#: The 40 models of the first coverage runs, in their order.
FIRST = [
    'mmpretrain::resnet/resnet50_8xb32_in1k.py@128',
    'mmpretrain::resnext/resnext50-32x4d_8xb32_in1k.py@128',
    'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py@128',
    'mmpretrain::efficientnet/efficientnet-b0_8xb32_in1k.py@128',
    'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py@128',
    'mmpretrain::regnet/regnetx-400mf_8xb128_in1k.py@128',
    'mmpretrain::deit/deit-small_4xb256_in1k.py@128',
    'mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py@128',
    'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py@224',
    'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py@192',
    'mmseg::deeplabv3plus/'
    'deeplabv3plus_r18-d8_4xb2-80k_cityscapes-512x1024.py@128',
    'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py@128',
    'mmseg::vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py@192',
    'mmpretrain::convmixer/convmixer-1024-20_10xb64_in1k.py@128',
    'mmseg::ann/ann_r50-d8_4xb2-40k_cityscapes-512x1024.py@192',
    'mmpretrain::convnext_v2/convnext-v2-atto_32xb32_in1k.py@128',
    'mmseg::apcnet/apcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@192',
    'mmpretrain::cspnet/cspdarknet50_8xb32_in1k.py@128',
    'mmseg::bisenetv1/'
    'bisenetv1_r18-d32-in1k-pre_4xb4-160k_cityscapes-1024x1024.py@128',
    'mmpretrain::densenet/densenet121_4xb256_in1k.py@128',
    'mmseg::bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py@128',
    'mmpretrain::efficientnet_v2/efficientnetv2-b0_8xb32_in1k.py@128',
    'mmseg::ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@128',
    'mmpretrain::hrnet/hrnet-w18_4xb32_in1k.py@128',
    'mmseg::cgnet/cgnet_fcn_4xb4-60k_cityscapes-680x680.py@128',
    'mmpretrain::inception_v3/inception-v3_8xb32_in1k.py@128',
    'mmseg::convnext/convnext-base_upernet_8xb2-amp-160k_ade20k-512x512.py'
    '@192',
    'mmpretrain::levit/levit-128_8xb256_in1k.py@224',
    'mmseg::danet/danet_r50-d8_4xb2-40k_cityscapes-512x1024.py@128',
    'mmpretrain::mobilenet_v3/mobilenet-v3-small-050_8xb128_in1k.py@128',
    'mmseg::ddrnet/ddrnet_23-slim_in1k-pre_2xb6-120k_cityscapes-1024x1024.py'
    '@128',
    'mmpretrain::mobileone/mobileone-s0_8xb32_in1k.py@128',
    'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py@128',
    'mmpretrain::mobilevit/mobilevit-small_8xb128_in1k.py@224',
    'mmseg::dmnet/dmnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@128',
    'mmpretrain::repmlp/repmlp-base_8xb64_in1k-256px.py@256',
    'mmseg::dnlnet/dnl_r50-d8_4xb2-40k_cityscapes-512x1024.py@128',
    'mmpretrain::repvgg/repvgg-A0_8xb32_in1k.py@128',
    'mmseg::dpt/dpt_vit-b16_8xb2-160k_ade20k-512x512.py@128',
    'mmpretrain::shufflenet_v1/shufflenet-v1-1x_16xb64_in1k.py@128',
]

#: One config for each folder the first list left out, smallest variant.
ADDED = [
    # mmpretrain
    'mmpretrain::beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py'
    '@224',
    'mmpretrain::clip/vit-base-p32_pt-64xb64_in1k.py@224',
    'mmpretrain::conformer/conformer-tiny-p16_8xb128_in1k.py@224',
    'mmpretrain::csra/resnet101-csra_1xb16_voc07-448px.py@128',
    'mmpretrain::davit/davit-tiny_4xb256_in1k.py@224',
    'mmpretrain::deit3/deit3-small-p16_64xb64_in1k.py@128',
    'mmpretrain::edgenext/edgenext-xxsmall_8xb256_in1k.py@224',
    'mmpretrain::efficientformer/efficientformer-l1_8xb128_in1k.py@224',
    'mmpretrain::eva02/eva02-tiny-p14_in1k.py@224',
    'mmpretrain::hivit/hivit-tiny-p16_16xb64_in1k.py@224',
    'mmpretrain::hornet/hornet-tiny_8xb128_in1k.py@128',
    'mmpretrain::lenet/lenet5_mnist.py@32',
    'mmpretrain::mixmim/benchmarks/mixmim-base_8xb128-coslr-100e_in1k.py'
    '@224',
    'mmpretrain::mlp_mixer/mlp-mixer-base-p16_64xb64_in1k.py@224',
    'mmpretrain::mvit/mvitv2-tiny_8xb256_in1k.py@224',
    'mmpretrain::poolformer/poolformer-s12_32xb128_in1k.py@128',
    'mmpretrain::res2net/res2net50-w14-s8_8xb32_in1k.py@128',
    'mmpretrain::resnest/resnest50_32xb64_in1k.py@128',
    'mmpretrain::revvit/revvit-small_8xb256_in1k.py@224',
    'mmpretrain::riformer/riformer-s12_8xb128_in1k.py@128',
    'mmpretrain::seresnet/seresnet50_8xb32_in1k.py@128',
    'mmpretrain::shufflenet_v2/shufflenet-v2-1x_16xb64_in1k.py@128',
    'mmpretrain::swin_transformer_v2/swinv2-tiny-w8_16xb64_in1k-256px.py'
    '@256',
    'mmpretrain::t2t_vit/t2t-vit-t-14_8xb64_in1k.py@224',
    'mmpretrain::tinyvit/tinyvit-5m_8xb256_in1k.py@224',
    'mmpretrain::tnt/tnt-s-p16_16xb64_in1k.py@224',
    'mmpretrain::twins/twins-pcpvt-small_8xb128_in1k.py@128',
    'mmpretrain::van/van-tiny_8xb128_in1k.py@128',
    'mmpretrain::vgg/vgg11_8xb32_in1k.py@224',  # a fixed 7x7 classifier
    'mmpretrain::vig/vig-tiny_8xb128_in1k.py@224',
    'mmpretrain::wrn/wide-resnet50_8xb32_in1k.py@128',
    'mmpretrain::xcit/xcit-nano-12-p16_8xb128_in1k.py@128',
    'mmpretrain::replknet/replknet-31B_32xb64_in1k.py@128',
    'mmpretrain::eva/eva-l-p14_8xb16_in1k-196px.py@112',
    # mmseg
    'mmseg::emanet/emanet_r50-d8_4xb2-80k_cityscapes-512x1024.py@128',
    'mmseg::encnet/encnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@128',
    'mmseg::erfnet/erfnet_fcn_4xb4-160k_cityscapes-512x1024.py@128',
    'mmseg::fastfcn/fastfcn_r50-d32_jpu_psp_4xb2-80k_cityscapes-512x1024.py'
    '@192',
    'mmseg::fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py@192',
    'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py@128',
    'mmseg::gcnet/gcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py@128',
    'mmseg::hrnet/fcn_hr18s_4xb2-40k_cityscapes-512x1024.py@128',
    'mmseg::icnet/icnet_r18-d8_4xb2-80k_cityscapes-832x832.py@192',
    'mmseg::isanet/isanet_r50-d8_4xb2-40k_cityscapes-512x1024.py@128',
    'mmseg::knet/knet-s3_r50-d8_fcn_8xb2-adamw-80k_ade20k-512x512.py@128',
    'mmseg::mobilenet_v2/mobilenet-v2-d8_fcn_4xb2-80k_cityscapes-512x1024.py'
    '@128',
    # LR-ASPP pools with a 49x49 kernel at 1/8: at least 392 px
    'mmseg::mobilenet_v3/mobilenet-v3-d8-s_lraspp_4xb4-320k_cityscapes-'
    '512x1024.py@448',
    'mmseg::nonlocal_net/nonlocal_r50-d8_4xb2-40k_cityscapes-512x1024.py'
    '@128',
    'mmseg::ocrnet/ocrnet_hr18s_4xb2-40k_cityscapes-512x1024.py@128',
    'mmseg::pidnet/pidnet-s_2xb6-120k_1024x1024-cityscapes.py@128',
    'mmseg::poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py@128',
    'mmseg::psanet/psanet_r50-d8_4xb2-40k_cityscapes-512x1024.py@128',
    'mmseg::resnest/resnest_s101-d8_fcn_4xb2-80k_cityscapes-512x1024.py'
    '@128',
    'mmseg::segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py@128',
    'mmseg::segnext/segnext_mscan-t_1xb16-adamw-160k_ade20k-512x512.py@128',
    'mmseg::sem_fpn/fpn_r50_4xb2-80k_cityscapes-512x1024.py@128',
    'mmseg::stdc/stdc1_4xb12-80k_cityscapes-512x1024.py@128',
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_'
    'ade20k-512x512.py@192',
    'mmseg::twins/twins_pcpvt-s_uperhead_8xb4-160k_ade20k-512x512.py@192',
    'mmseg::unet/unet-s5-d16_fcn_4xb4-40k_drive-64x64.py@64',
    'mmseg::upernet/upernet_r18_4xb2-40k_cityscapes-512x1024.py@192',
    'mmseg::beit/beit-base_upernet_8xb2-160k_ade20k-640x640.py@640',
    'mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py@512',
    'mmseg::setr/setr_vit-l_naive_8xb2-160k_ade20k-512x512.py@128',
]

#: The whole list.
ZOO = FIRST + ADDED

_RESNET50 = ('self-supervised pre-training of ResNet-50; its only '
             'supervised configs are linear probes (and detection) of a '
             'ResNet-50, the model of `resnet`')
_VIT = ('self-supervised pre-training; its supervised configs fine-tune a '
        'ViT-B/L, the model of `vision_transformer`')
_MULTIMODAL = 'vision-language model: no image classifier'

#: Folders without a config in :data:`ZOO`, and why.
SKIPPED = {
    'mmseg::point_rend': 'MMSeg 1.2.2 has no tensor mode for PointRend '
    '(`CascadeEncoderDecoder._forward` passes the FPN features to '
    '`PointHead.forward`, which wants point features: "TODO support '
    'PointRend tensor mode"), which ONNX export and every check run',
    'mmpretrain::arcface': 'retrieval (ImageToImageRetriever), no '
    'classifier; its backbone is a ResNet-50',
    'mmpretrain::barlowtwins': _RESNET50,
    'mmpretrain::byol': _RESNET50,
    'mmpretrain::densecl': _RESNET50,
    'mmpretrain::mocov2': _RESNET50,
    'mmpretrain::simclr': _RESNET50,
    'mmpretrain::simsiam': _RESNET50,
    'mmpretrain::swav': _RESNET50,
    'mmpretrain::beitv2': 'self-supervised pre-training; its supervised '
    'configs fine-tune a BEiT-B, the model of `beit`',
    'mmpretrain::cae': 'self-supervised pre-training; its supervised '
    'config fine-tunes a BEiT-B, the model of `beit`',
    'mmpretrain::mae': _VIT,
    'mmpretrain::maskfeat': _VIT,
    'mmpretrain::milan': _VIT,
    'mmpretrain::mff': _VIT,
    'mmpretrain::mocov3': _VIT + ' (or a ResNet-50)',
    'mmpretrain::simmim': 'self-supervised pre-training; its supervised '
    'configs fine-tune a Swin-B, the model of `swin_transformer`',
    'mmpretrain::spark': 'self-supervised pre-training; its supervised '
    'configs fine-tune a ResNet-50 and a ConvNeXt-V2-T (`resnet`, '
    '`convnext_v2`)',
    'mmpretrain::itpn': 'self-supervised pre-training configs only (HiViT, '
    'the model of `hivit`)',
    'mmpretrain::dinov2': 'headless backbones only (ViT), no classifier',
    'mmpretrain::sam': 'headless image encoders only (ViT), no classifier',
    'mmpretrain::glip': 'headless detection backbones only (Swin), no '
    'classifier',
    'mmpretrain::blip': _MULTIMODAL,
    'mmpretrain::blip2': _MULTIMODAL,
    'mmpretrain::chinese_clip': _MULTIMODAL + ' (zero-shot by text)',
    'mmpretrain::flamingo': _MULTIMODAL,
    'mmpretrain::llava': _MULTIMODAL,
    'mmpretrain::minigpt4': _MULTIMODAL,
    'mmpretrain::ofa': _MULTIMODAL,
    'mmpretrain::otter': _MULTIMODAL,
    'mmseg::dsdl': 'dataset-format examples (DSDL annotations) for models '
    'covered elsewhere',
    'mmseg::mask2former': 'needs MMDetection (its heads and matcher), '
    'which mmcpd does not install',
    'mmseg::maskformer': 'needs MMDetection (its heads and matcher), '
    'which mmcpd does not install',
    'mmseg::san': 'open-vocabulary segmentation by a CLIP text encoder '
    '(multimodal)',
    'mmseg::vpd': 'depth estimation from Stable Diffusion features '
    '(multimodal; needs packages mmcpd does not install)',
}
