"""Paper folders. Each subpackage registers its methods (and any models/datasets) on import;
:func:`common.registry.load_plugins` imports them all."""
