"""An mfed extension living outside mfed: a task (:mod:`.near`) and a strategy (:mod:`.warmup`).

Its config groups are in ``configs/`` inside the package: ``--config-dir pkg://mfed_example.configs``
(or ``MFED_CONFIG_PATH=pkg://mfed_example.configs``) puts them beside mfed's own.
"""
