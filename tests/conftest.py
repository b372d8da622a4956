import warnings
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        yield


@pytest.fixture(autouse=True)
def _no_default_scope():
    """Every test starts without a default scope and leaves none behind.

    mmengine keeps the default scope process-wide: every Runner (``mmengine``
    when its config names none) and ``init_default_scope`` set one that
    outlives them, so a test could pass only after another one ran. A test
    that needs a scope sets it (``DefaultScope.overwrite_default_scope``,
    a Runner's ``default_scope``, a ``_scope_`` key).
    """
    DefaultScope._instance_dict = OrderedDict()
    yield
    DefaultScope._instance_dict = OrderedDict()


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'cuda: needs a CUDA GPU; skipped where torch sees none '
        '(tools/gpu_smoke.sh runs them with `-m cuda`)')


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason='needs CUDA: torch.cuda.is_available() is False here')
    for item in items:
        if item.get_closest_marker('cuda') is not None:
            item.add_marker(skip)
