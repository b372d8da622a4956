"""Deploy: ONNX export checked against torch, and latency measurement.

Importing this package is light: onnx, onnxruntime, onnxslim and
matplotlib are imported by the functions that use them.
"""
from .adapter import TensorModeAdapter
from .benchmark import ModelSource, benchmark_models, prepare_onnx, speedups
from .complexity import model_complexity, onnx_complexity
from .meter import LatencyMeter
from .latency import (PROVIDERS, LatencyResult, LatencyStats, latency_stats,
                      measure_latencies, measure_latency)
from .onnx_export import (EXPORTERS, ONNXMismatchError, export_onnx,
                          make_session, verify_onnx)
from .profile import (NodeTime, by_op_type, compare_profiles, profile_nodes,
                      split_time)
from .report import plot_latency, result_table, write_json
from .simplify import simplify_onnx

__all__ = [
    'TensorModeAdapter', 'export_onnx', 'verify_onnx', 'make_session',
    'ONNXMismatchError', 'EXPORTERS', 'simplify_onnx', 'measure_latency',
    'measure_latencies', 'latency_stats', 'LatencyStats', 'LatencyResult',
    'PROVIDERS', 'model_complexity', 'onnx_complexity', 'ModelSource',
    'prepare_onnx', 'benchmark_models', 'speedups', 'result_table',
    'write_json', 'plot_latency', 'profile_nodes', 'compare_profiles',
    'split_time', 'by_op_type', 'NodeTime', 'LatencyMeter'
]
