"""GPU execution providers: no silent CPU fallback, per-GPU tables.

onnxruntime-gpu lists the CUDA and TensorRT providers whether or not their
libraries load, and a session whose provider fails falls back to the next
one without a word. These tests fake such a session on the CPU; the
``cuda`` ones check a real GPU.
"""
import os.path as osp
import time

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import mmcpd.deploy.onnx_export as onnx_export
from mmcpd.deploy import latency_table as lt
from mmcpd.deploy.latency import PROVIDERS, measure_latency
from mmcpd.deploy.onnx_export import make_session

GPU_PROVIDERS = ['TensorrtExecutionProvider', 'CUDAExecutionProvider',
                 'CPUExecutionProvider']
InferenceSession = ort.InferenceSession  # the real one


@pytest.fixture(scope='module')
def relu_onnx(tmp_path_factory):
    graph = helper.make_graph(
        [helper.make_node('Relu', ['x'], ['y'])], 'relu',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    path = str(tmp_path_factory.mktemp('onnx') / 'relu.onnx')
    with open(path, 'wb') as f:
        f.write(model.SerializeToString())
    return path


class FallbackSession:
    """An InferenceSession that, like onnxruntime-gpu without its CUDA
    libraries, runs on the CPU whatever it was asked for."""
    asked = []

    def __init__(self, path, sess_options=None, providers=None):
        FallbackSession.asked.append(providers)
        self._session = InferenceSession(
            path, sess_options=sess_options,
            providers=['CPUExecutionProvider'])

    def __getattr__(self, name):
        return getattr(self._session, name)


class GrantingSession:
    """An InferenceSession that runs on whatever it is asked for."""
    asked = []

    def __init__(self, path, sess_options=None, providers=None):
        GrantingSession.asked.append(providers)
        self.providers = [p if isinstance(p, str) else p[0]
                          for p in providers]

    def get_providers(self):
        return self.providers


@pytest.fixture
def gpu_ort(monkeypatch):
    """onnxruntime-gpu without working CUDA: every provider listed,
    sessions on the CPU."""
    monkeypatch.setattr(ort, 'get_available_providers',
                        lambda: list(GPU_PROVIDERS))
    FallbackSession.asked = []
    monkeypatch.setattr(ort, 'InferenceSession', FallbackSession)


@pytest.mark.parametrize('provider', ['cuda', 'tensorrt'])
def test_a_session_on_the_wrong_provider_is_an_error(relu_onnx, gpu_ort,
                                                     provider):
    asked = PROVIDERS[provider][0]
    with pytest.raises(RuntimeError) as info:
        make_session(relu_onnx, PROVIDERS[provider])
    message = str(info.value)
    assert f'on {asked}, but the session runs on CPUExecutionProvider' \
        in message
    assert 'could not set it up' in message  # it is listed
    assert FallbackSession.asked, 'no session was made'


def test_an_unlisted_provider_is_named(relu_onnx, monkeypatch):
    monkeypatch.setattr(ort, 'get_available_providers',
                        lambda: ['CPUExecutionProvider'])
    monkeypatch.setattr(ort, 'InferenceSession', FallbackSession)
    with pytest.raises(RuntimeError, match='does not have it'):
        make_session(relu_onnx, ['CUDAExecutionProvider'])


def test_the_cpu_provider_is_still_fine(relu_onnx):
    session = make_session(relu_onnx)
    assert session.get_providers() == ['CPUExecutionProvider']


def test_latency_refuses_cpu_timings_for_the_gpu(relu_onnx, gpu_ort):
    """measure_latency(provider='cuda') on a silent fallback: an error
    naming both providers, not CPU timings labelled cuda."""
    with pytest.raises(RuntimeError,
                       match='on CUDAExecutionProvider, but the session '
                       'runs on CPUExecutionProvider'):
        measure_latency(relu_onnx, warmup=0, runs=1, provider='cuda',
                        progress=False)


def test_latency_table_refuses_cpu_timings_for_the_gpu(relu_onnx, gpu_ort,
                                                       tmp_path):
    with pytest.raises(
            RuntimeError,
            match='on CUDAExecutionProvider, but the session '
            'runs on CPUExecutionProvider'):
        lt._time_files([relu_onnx], 'cuda', 1, 0.0, str(tmp_path))


def test_tensorrt_gets_an_engine_cache(relu_onnx, monkeypatch, tmp_path):
    import mmcpd.deploy.providers as providers
    monkeypatch.setenv('MMCPD_CACHE', str(tmp_path))
    monkeypatch.setattr(providers, 'gpu_model',
                        lambda device=0: 'NVIDIA X 80GB')
    GrantingSession.asked = []
    monkeypatch.setattr(ort, 'InferenceSession', GrantingSession)
    make_session(relu_onnx, PROVIDERS['tensorrt'])
    (trt, trt_options), cuda, cpu = GrantingSession.asked[0]
    assert (trt, cuda, cpu) == tuple(GPU_PROVIDERS)
    assert trt_options['trt_engine_cache_enable'] is True
    path = trt_options['trt_engine_cache_path']
    assert path == osp.join(str(tmp_path), 'tensorrt', 'NVIDIA_X_80GB')
    assert osp.isdir(path)
    # the CUDA and CPU providers get no options
    make_session(relu_onnx, PROVIDERS['cuda'])
    assert GrantingSession.asked[1] == PROVIDERS['cuda']


def test_machine_info_names_the_gpu(monkeypatch):
    """A table measured on one GPU model is not another's: the GPU is in
    the machine info, so in the cache key; the CPU's info is as before."""
    import torch
    cpu = lt.machine_info(1, 'cpu')
    assert set(cpu) == {'cpu', 'isa', 'onnxruntime', 'threads',
                        'provider', 'format'}  # old CPU tables stay valid
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    infos = {}
    for name in ('NVIDIA A100-SXM4-80GB', 'NVIDIA H100 80GB HBM3'):
        monkeypatch.setattr(torch.cuda, 'get_device_name',
                            lambda device=None, name=name: name)
        infos[name] = lt.machine_info(1, 'cuda')
        assert infos[name]['gpu'] == name
        assert infos[name]['execution_provider'] == 'CUDAExecutionProvider'
    a100, h100 = infos.values()
    keys = {lt._key(cpu), lt._key(a100), lt._key(h100)}
    assert len(keys) == 3
    trt = lt.machine_info(1, 'tensorrt')
    assert trt['execution_provider'] == 'TensorrtExecutionProvider'
    assert lt._key(trt) not in keys


class SlowSession:
    """A real CPU session whose runs take ``ms`` more."""

    def __init__(self, session, ms):
        self._session, self.ms = session, ms

    def run_with_iobinding(self, binding):
        time.sleep(self.ms / 1e3)
        self._session.run_with_iobinding(binding)

    def __getattr__(self, name):
        return getattr(self._session, name)


def test_gpu_tables_time_whole_runs(relu_onnx, tmp_path, monkeypatch):
    """On CUDA / TensorRT the profiler's node times are launches: each
    file is timed as a whole run (its fastest), not profiled."""
    prefixes = []
    extra = iter([3.0, 6.0])

    def fake_session(path, providers, threads=None, profile_prefix=None,
                     spin=None):
        prefixes.append(profile_prefix)
        session = InferenceSession(path, providers=['CPUExecutionProvider'])
        return SlowSession(session, next(extra))

    real_bind = lt._bind
    monkeypatch.setattr(onnx_export, 'make_session', fake_session)
    monkeypatch.setattr(lt, '_bind',
                        lambda session, array, device: real_bind(
                            session, array, 'cpu'))
    fast, slow = lt._time_files([relu_onnx, relu_onnx], 'cuda', 1, 0.0,
                                str(tmp_path), min_runs=3)
    assert prefixes == [None, None], 'profiled on the GPU'
    # the whole run: the sleep is in it (a Relu node alone takes us)
    assert 3.0 <= fast < slow and slow >= 6.0
    assert not list(tmp_path.glob('trace*'))


def test_cpu_tables_still_profile_nodes(relu_onnx, tmp_path, monkeypatch):
    prefixes = []
    real = onnx_export.make_session

    def recording(path, providers, **kwargs):
        prefixes.append(kwargs.get('profile_prefix'))
        return real(path, providers, **kwargs)

    monkeypatch.setattr(onnx_export, 'make_session', recording)
    (ms, ) = lt._time_files([relu_onnx], 'cpu', 1, 0.0, str(tmp_path))
    assert prefixes == [osp.join(str(tmp_path), 'trace0')]
    assert 0 <= ms < 5.0  # a Relu's fastest node time, not a whole run


# ---------------------------------------------------------------- on a GPU


@pytest.mark.cuda
def test_cuda_sessions_run_on_cuda(relu_onnx):
    if 'CUDAExecutionProvider' not in ort.get_available_providers():
        pytest.skip('this onnxruntime has no CUDA provider '
                    '(pip install onnxruntime-gpu)')
    session = make_session(relu_onnx, PROVIDERS['cuda'])
    assert session.get_providers()[0] == 'CUDAExecutionProvider'
    x = np.array([[-1, 0, 1, 2]], dtype=np.float32)
    (y, ) = session.run(None, {'x': x})
    np.testing.assert_array_equal(y, np.maximum(x, 0))


@pytest.mark.cuda
def test_machine_info_has_this_gpu():
    import torch
    info = lt.machine_info(1, 'cuda')
    assert info['gpu'] == torch.cuda.get_device_name(0)
