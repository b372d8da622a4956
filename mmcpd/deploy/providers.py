"""Which GPU, where mmcpd caches, and the options of onnxruntime's
execution providers: shared by the session factory (:mod:`.onnx_export`)
and the latency tools (:mod:`.latency`, :mod:`.latency_table`)."""
import os
import os.path as osp
import re
import subprocess


def gpu_model(device: int = 0) -> str:
    """The name of CUDA device ``device`` (the one onnxruntime's CUDA and
    TensorRT providers run on by default), e.g. ``'NVIDIA H100 80GB HBM3'``;
    ``'unknown GPU'`` when neither torch nor ``nvidia-smi`` can tell."""
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(device)
    except Exception:  # a torch without CUDA, a broken driver: try smi
        pass
    try:
        names = subprocess.run(
            ['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'],
            capture_output=True, text=True, timeout=30,
            check=True).stdout.splitlines()
        if len(names) > device and names[device].strip():
            return names[device].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return 'unknown GPU'


def cache_root() -> str:
    """mmcpd's cache folder: ``$MMCPD_CACHE``, else ``~/.cache/mmcpd``."""
    return os.environ.get('MMCPD_CACHE',
                          osp.join(osp.expanduser('~'), '.cache', 'mmcpd'))


def provider_options(provider: str) -> dict:
    """onnxruntime options of an execution provider (by its full name).

    TensorRT builds an engine per graph when a session starts (seconds to
    minutes per graph, and a latency table makes hundreds of graphs): its
    engines are cached in ``<cache_root()>/tensorrt/<GPU model>``, so a
    second session of the same graph on the same GPU model loads it.
    Other providers get no options.
    """
    if provider != 'TensorrtExecutionProvider':
        return {}
    gpu = re.sub(r'[^A-Za-z0-9.-]+', '_', gpu_model()).strip('_')
    path = osp.join(cache_root(), 'tensorrt', gpu)
    os.makedirs(path, exist_ok=True)
    return dict(trt_engine_cache_enable=True, trt_engine_cache_path=path)
