"""``register_all_modules``: the OpenMMLab convention for a package scope.

mmengine calls ``<scope>.utils.register_all_modules(False)`` for packages in
its ``MODULE2PACKAGE`` table when it builds from a registry of that scope.
"""


def register_all_modules(init_default_scope: bool = False) -> None:
    """Import mmcpd's modules so that their registries are filled.

    Args:
        init_default_scope (bool): Kept for the OpenMMLab signature. mmcpd
            registers its models, hooks and datasets in mmengine's root
            registries and has no default scope of its own, so this only
            imports. Defaults to False.
    """
    # The OpenMMLab convention makes `<scope>.utils` import the whole
    # package: the one import from the lowest layer to the top, declared
    # in .importlinter.
    import mmcpd  # noqa: F401  (its __init__ imports every registering part)
