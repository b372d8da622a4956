"""Deploy: ONNX export checked against torch, and latency measurement.

Importing this package is light: onnx, onnxruntime, onnxslim and
matplotlib are imported by the functions that use them.
"""
from mmcpd.deploy.adapter import TensorModeAdapter
from mmcpd.deploy.complexity import model_complexity, onnx_complexity
from mmcpd.deploy.meter import LatencyMeter
from mmcpd.deploy.latency import (PROVIDERS, LatencyResult, LatencyStats,
                                  latency_stats, measure_latencies,
                                  measure_latency)
from mmcpd.deploy.onnx_export import (EXPORTERS, ONNXMismatchError,
                                      export_onnx, make_session, verify_onnx)
from mmcpd.deploy.profile import (NodeTime, by_op_type, compare_profiles,
                                  profile_nodes, split_time)
from mmcpd.deploy.report import plot_latency, result_table, write_json
from mmcpd.deploy.simplify import simplify_onnx

__all__ = [
    'TensorModeAdapter', 'export_onnx', 'verify_onnx', 'make_session',
    'ONNXMismatchError', 'EXPORTERS', 'simplify_onnx', 'measure_latency',
    'measure_latencies', 'latency_stats', 'LatencyStats', 'LatencyResult',
    'PROVIDERS', 'model_complexity', 'onnx_complexity', 'result_table',
    'write_json', 'plot_latency', 'profile_nodes', 'compare_profiles',
    'split_time', 'by_op_type', 'NodeTime', 'LatencyMeter'
]
