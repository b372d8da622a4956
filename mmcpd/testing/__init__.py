"""Oracles, not entry points: the checks that the coverage tool and the
contract test run over zoo models (masked == pruned == rebuilt == ONNX,
FLOPs against mmengine's counter, a CPDHook run whose deploy checkpoint
computes what the masked student did)."""
