"""Turn any CPDHook training checkpoint into the small deploy checkpoint.

    python tools/convert_checkpoint.py CONFIG CHECKPOINT OUT

OUT holds only the physically pruned model's weights and its spec (under
``pruned_spec``); it loads with ``torch.load(weights_only=True)`` and needs
only mmcpd and the original config (``tools/test.py``,
``tools/export_onnx.py``).
"""
import sys

from mmcpd.apis.convert import main

if __name__ == '__main__':
    main(sys.argv[1:])
