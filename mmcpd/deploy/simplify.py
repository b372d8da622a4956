"""Simplify an exported ONNX graph with onnxslim.

onnxslim folds constants, removes identity and dead nodes and fuses
patterns (e.g. Conv + BN left by the exporter, GELU, LayerNorm) before
onnxruntime sees the graph. onnxruntime's own ``ORT_ENABLE_ALL`` optimiser
does much of the same at session start, so whether slimming changes latency
depends on the model; ``docs/deploy.md`` gives measured numbers, and
``tools/benchmark_onnx.py`` measures both when asked (``--compare-slim``).
The slimmed file is verified against torch like the exported one.
"""
import os.path as osp

__all__ = ['simplify_onnx']


def simplify_onnx(path: str, out: str = None) -> str:
    """Write an onnxslim-simplified copy of an ONNX file.

    Args:
        path (str): The exported ``.onnx`` file.
        out (str, optional): Where to write the simplified file. Defaults to
            ``<name>.slim.onnx`` next to ``path``.

    Returns:
        str: The path of the simplified file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: onnxslim returned nothing.
    """
    import onnx
    import onnxslim

    path = str(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'ONNX file `{path}` does not exist')
    if out is None:
        root, ext = osp.splitext(path)
        out = root + '.slim' + (ext or '.onnx')
    proto = onnx.load(path)
    metadata = [(p.key, p.value) for p in proto.metadata_props]
    slimmed = onnxslim.slim(proto)
    if slimmed is None:
        raise RuntimeError(f'onnxslim could not simplify `{path}`')
    del slimmed.metadata_props[:]
    for key, value in metadata + [('mmcpd_onnxslim', onnxslim.__version__)]:
        entry = slimmed.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(slimmed, out)
    onnx.checker.check_model(out, full_check=True)
    return str(out)
