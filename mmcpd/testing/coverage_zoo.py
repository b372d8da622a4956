"""The coverage list: one supervised config per architecture folder.

One config (the smallest variant) of every architecture folder of the
installed MMPretrain 1.2 and MMSegmentation 1.2.2 (``.mim/configs``), as
``'pkg::folder/config.py@SIZE'`` (``@SIZE``: the input size; without it the
coverage tool's ``--size`` or the config's own). The first 40 are the list
the coverage table has run since the oracle was written (kept so that runs
compare); the rest were added by folder. :data:`SKIPPED` names each folder
that has no supervised classifier or segmentor of its own, and why.
:data:`DETECTION` and :data:`DETECTION_SKIPPED` do the same for the
installed MMDetection 3.3 (``--det`` of the tool).

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
    'mmseg::mask2former':
    'needs MMDetection (its heads and matcher), installed '
    'since issue 25 but not yet run in this list; the same heads pass '
    'every check in the MMDetection list (its `mask2former` folder)',
    'mmseg::maskformer':
    'needs MMDetection (its heads and matcher), installed '
    'since issue 25 but not yet run in this list; the same heads pass '
    'every check in the MMDetection list (its `maskformer` folder)',
    'mmseg::san': 'open-vocabulary segmentation by a CLIP text encoder '
    '(multimodal)',
    'mmseg::vpd': 'depth estimation from Stable Diffusion features '
    '(multimodal; needs packages mmcpd does not install)',
}


#: One supervised detector or instance segmentor per architecture folder of
#: the installed MMDetection 3.3 (``.mim/configs``), the smallest variant
#: (R-18, R-50 or the tiny one), at 128x128 (nothing in these models fixes
#: the input size), DDOD at 384. :data:`DETECTION_SKIPPED` names the
#: folders left out.
DETECTION = [
    # single-stage
    'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py@128',
    'mmdet::atss/atss_r18_fpn_8xb8-amp-lsj-200e_coco.py@128',
    'mmdet::fcos/fcos_r18_fpn_gn-head-center-normbbox-centeronreg-giou_'
    '8xb8-amp-lsj-200e_coco.py@128',
    'mmdet::autoassign/autoassign_r50-caffe_fpn_1x_coco.py@128',
    'mmdet::centernet/centernet_r18_8xb16-crop512-140e_coco.py@128',
    # its head's deformable convs (DeformConv2dPack) take no map smaller
    # than their kernel: P7, at 1/128, of at least 3x3
    'mmdet::ddod/ddod_r50_fpn_1x_coco.py@384',
    'mmdet::dyhead/atss_r50_fpn_dyhead_1x_coco.py@128',
    'mmdet::foveabox/fovea_r50_fpn_4xb4-1x_coco.py@128',
    'mmdet::fsaf/fsaf_r50_fpn_1x_coco.py@128',
    'mmdet::gfl/gfl_r50_fpn_1x_coco.py@128',
    'mmdet::guided_anchoring/ga-retinanet_r50_fpn_1x_coco.py@128',
    'mmdet::nas_fcos/'
    'nas-fcos_r50-caffe_fpn_nashead-gn-head_4xb4-1x_coco.py@128',
    'mmdet::reppoints/reppoints-moment_r50_fpn_1x_coco.py@128',
    'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py@128',
    'mmdet::sabl/sabl-retinanet_r50_fpn_1x_coco.py@128',
    'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py@128',
    'mmdet::tood/tood_r50_fpn_1x_coco.py@128',
    'mmdet::vfnet/vfnet_r50_fpn_1x_coco.py@128',
    'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py@128',
    'mmdet::yolof/yolof_r50-c5_8xb8-1x_coco.py@128',
    'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py@128',
    # backbones and necks (on the detector their smallest config uses)
    'mmdet::efficientnet/retinanet_effb3_fpn_8xb4-crop896-1x_coco.py@128',
    'mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py@128',
    'mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py@128',
    'mmdet::hrnet/fcos_hrnetv2p-w18-gn-head_4xb4-1x_coco.py@128',
    'mmdet::regnet/faster-rcnn_regnetx-400MF_fpn_ms-3x_coco.py@128',
    'mmdet::res2net/faster-rcnn_res2net-101_fpn_2x_coco.py@128',
    'mmdet::resnest/'
    'faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py@128',
    'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'
    '@128',
    'mmdet::detectors/detectors_cascade-rcnn_r50_1x_coco.py@128',
    'mmdet::dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py@128',
    'mmdet::dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py@128',
    'mmdet::empirical_attention/faster-rcnn_r50-attn0010_fpn_1x_coco.py'
    '@128',
    'mmdet::gcnet/mask-rcnn_r50-gcb-r16-c3-c5_fpn_1x_coco.py@128',
    'mmdet::gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py@128',
    'mmdet::gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py@128',
    'mmdet::fpg/retinanet_r50_fpg-chn128_crop640_50e_coco.py@128',
    'mmdet::nas_fpn/retinanet_r50_nasfpn_crop640-50e_coco.py@128',
    'mmdet::pafpn/faster-rcnn_r50_pafpn_1x_coco.py@128',
    'mmdet::carafe/faster-rcnn_r50_fpn-carafe_1x_coco.py@128',
    'mmdet::libra_rcnn/libra-retinanet_r50_fpn_1x_coco.py@128',
    # two-stage
    'mmdet::rpn/rpn_r50_fpn_1x_coco.py@128',
    'mmdet::faster_rcnn/faster-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco.py@128',
    'mmdet::mask_rcnn/mask-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco.py@128',
    'mmdet::cascade_rcnn/cascade-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco.py'
    '@128',
    'mmdet::cascade_rpn/cascade-rpn_faster-rcnn_r50-caffe_fpn_1x_coco.py'
    '@128',
    'mmdet::double_heads/dh-faster-rcnn_r50_fpn_1x_coco.py@128',
    'mmdet::grid_rcnn/grid-rcnn_r50_fpn_gn-head_1x_coco.py@128',
    'mmdet::groie/faste-rcnn_r50_fpn_groie_1x_coco.py@128',
    'mmdet::ms_rcnn/ms-rcnn_r50_fpn_1x_coco.py@128',
    'mmdet::htc/htc-without-semantic_r50_fpn_1x_coco.py@128',
    'mmdet::scnet/scnet_r50_fpn_1x_coco.py@128',
    'mmdet::point_rend/point-rend_r50-caffe_fpn_ms-1x_coco.py@128',
    'mmdet::tridentnet/tridentnet_r50-caffe_1x_coco.py@128',
    'mmdet::crowddet/crowddet-rcnn_r50_fpn_8xb2-30e_crowdhuman.py@128',
    'mmdet::sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py@128',
    'mmdet::queryinst/queryinst_r50_fpn_1x_coco.py@128',
    'mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py@128',
    # DETR family
    'mmdet::detr/detr_r18_8xb2-500e_coco.py@128',
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py@128',
    'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py@128',
    'mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py@128',
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py@128',
    'mmdet::ddq/ddq-detr-4scale_r50_8xb2-12e_coco.py@128',
    'mmdet::maskformer/maskformer_r50_ms-16xb1-75e_coco.py@128',
    'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py@128',
    # single-stage instance segmentation
    'mmdet::solo/solo_r18_fpn_8xb8-lsj-200e_coco.py@128',
    'mmdet::solov2/solov2-light_r18_fpn_ms-3x_coco.py@128',
    'mmdet::yolact/yolact_r50_1xb8-55e_coco.py@128',
    'mmdet::condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py@128',
    # Hourglass-104 (CornerNet and CentripetalNet): by far the largest,
    # last
    'mmdet::cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py@128',
    'mmdet::centripetalnet/'
    'centripetalnet_hourglass104_16xb6-crop511-210e-mstest_coco.py@128',
]

_DATASET = 'a dataset folder: {} of the architecture folders on its data'
_RECIPE = 'a training recipe ({}) of {}'
_TRACKING = ('multi-object tracking or video instance segmentation: '
             'a detector of `{}` and a tracker, no single-image model')
_GROUNDING = ('open-vocabulary detection grounded by a BERT text encoder '
              '(vision-language; the text model is downloaded by name)')

#: MMDetection folders without a config in :data:`DETECTION`, and why.
DETECTION_SKIPPED = {
    'mmdet::_base_': 'the runtime base config only',
    'mmdet::common': 'schedule and data-pipeline bases, no model',
    'mmdet::dsdl': 'dataset-format examples (DSDL annotations), no model',
    'mmdet::cityscapes': _DATASET.format('Faster and Mask R-CNN'),
    'mmdet::deepfashion': _DATASET.format('Mask R-CNN'),
    'mmdet::lvis': _DATASET.format('Mask R-CNN'),
    'mmdet::objects365': _DATASET.format('Faster R-CNN and RetinaNet'),
    'mmdet::openimages': _DATASET.format('Faster R-CNN, RetinaNet and SSD'),
    'mmdet::pascal_voc': _DATASET.format('Faster R-CNN, RetinaNet and SSD'),
    'mmdet::wider_face': _DATASET.format('RetinaNet and SSD'),
    'mmdet::v3det': _DATASET.format('Faster and Cascade R-CNN, FCOS, '
                                    'Deformable DETR and DINO'),
    'mmdet::legacy_1.x': 'MMDetection 1.x weights of Faster, Mask and '
    'Cascade R-CNN, RetinaNet and SSD (the models of their folders)',
    'mmdet::misc': 'Detectron2 weights of Faster and Mask R-CNN and '
    'RetinaNet (the models of their folders)',
    'mmdet::albu_example': _RECIPE.format('Albumentations augmentation',
                                          'Mask R-CNN'),
    'mmdet::instaboost': _RECIPE.format('InstaBoost augmentation',
                                        'Mask and Cascade Mask R-CNN'),
    'mmdet::simple_copy_paste': _RECIPE.format('copy-paste augmentation',
                                               'Mask R-CNN'),
    'mmdet::strong_baselines': _RECIPE.format('large-scale jitter',
                                              'Mask R-CNN'),
    'mmdet::scratch': _RECIPE.format('training from scratch',
                                     'Faster and Mask R-CNN with GN (`gn`)'),
    'mmdet::selfsup_pretrain': _RECIPE.format(
        'self-supervised backbone weights', 'Mask R-CNN'),
    'mmdet::resnet_strikes_back': _RECIPE.format(
        'RSB backbone weights', 'Faster, Mask and Cascade R-CNN and '
        'RetinaNet'),
    'mmdet::ghm': _RECIPE.format('GHM losses', 'RetinaNet'),
    'mmdet::free_anchor': _RECIPE.format(
        'FreeAnchor matching loss; its head forwards as RetinaNet\'s',
        'RetinaNet'),
    'mmdet::pisa': _RECIPE.format('PISA sampling and losses',
                                  'Faster/Mask R-CNN, RetinaNet and SSD'),
    'mmdet::seesaw_loss': _RECIPE.format('Seesaw loss', 'Mask and Cascade '
                                         'Mask R-CNN'),
    'mmdet::dynamic_rcnn': _RECIPE.format(
        'dynamic IoU thresholds and loss', 'Faster R-CNN'),
    'mmdet::paa': _RECIPE.format(
        'probabilistic anchor assignment; its head forwards as ATSS\'s',
        'ATSS (`atss`)'),
    'mmdet::lad': 'knowledge distillation (a PAA teacher and student); '
    'the student is the model of `paa`',
    'mmdet::ld': 'knowledge distillation (a GFL teacher and student); '
    'the student is the model of `gfl`',
    'mmdet::soft_teacher': 'semi-supervised training (teacher-student '
    'wrapper) of Faster R-CNN',
    'mmdet::boxinst': 'box-supervised training (weak supervision) of the '
    'CondInst model (`condinst`)',
    'mmdet::fast_rcnn': 'takes precomputed proposals from the dataset (no '
    'RPN): its forward reads `proposals` from the data samples, which an '
    'image alone does not give; its RoI head is Faster R-CNN\'s',
    'mmdet::timm_example': 'needs timm, which the stack does not install',
    'mmdet::glip': _GROUNDING,
    'mmdet::grounding_dino': _GROUNDING,
    'mmdet::mm_grounding_dino': _GROUNDING,
    'mmdet::bytetrack': _TRACKING.format('yolox'),
    'mmdet::ocsort': _TRACKING.format('yolox'),
    'mmdet::strongsort': _TRACKING.format('yolox'),
    'mmdet::deepsort': _TRACKING.format('faster_rcnn'),
    'mmdet::sort': _TRACKING.format('faster_rcnn'),
    'mmdet::qdtrack': _TRACKING.format('faster_rcnn'),
    'mmdet::masktrack_rcnn': _TRACKING.format('mask_rcnn'),
    'mmdet::mask2former_vis': _TRACKING.format('mask2former'),
    'mmdet::reid': 're-identification of tracked boxes (a ResNet-50 '
    'classifier for trackers), no detector',
}
