"""Pure-Python CPD base configs; see ``mmcpd.configs``."""
