"""The options that mmcpd's tools share."""
import argparse
import os

from mmcpd.utils.cli import (add_launcher_options, add_onnx_options,
                             parse_launched)


def _parser(add):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser


def test_onnx_options_default_to_the_export_and_check_defaults():
    args = _parser(add_onnx_options).parse_args([])
    assert (args.opset, args.exporter, args.rtol, args.atol) == (17, 'legacy',
                                                                 1e-3, 1e-4)
    args = _parser(add_onnx_options).parse_args(
        ['--opset', '13', '--exporter', 'dynamo', '--atol', '0'])
    assert (args.opset, args.exporter, args.atol) == (13, 'dynamo', 0.0)


def test_local_rank_is_exported_unless_the_launcher_set_it(monkeypatch):
    parser = _parser(add_launcher_options)
    # recorded first, so that teardown restores the variable as it was
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.delenv('LOCAL_RANK')
    args = parse_launched(parser, ['--launcher', 'pytorch', '--local-rank',
                                   '3'])
    assert args.launcher == 'pytorch'
    assert os.environ['LOCAL_RANK'] == '3'
    monkeypatch.setenv('LOCAL_RANK', '1')  # torchrun's
    parse_launched(parser, ['--local_rank', '5'])
    assert os.environ['LOCAL_RANK'] == '1'
