"""The LightningModules clients train (``module``), their loss weightings and the M-Fed regulariser.

Nothing is imported here: :mod:`mfed.systems.weighting` is light (torch only) and the driver
uses it, while :mod:`mfed.systems.module` loads Lightning (seconds), only where a client is built.
"""
