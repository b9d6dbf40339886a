"""Many federated runs at once: sweeps (a grid of settings) and benchmarks (strategies x seeds).

Both plan their trials the same way (:mod:`~mfed.sweeps.plan`: every trial built, and so
checked, before anything starts), run them as Ray Tune trials on the cluster
(:mod:`~mfed.sweeps.schedule`) and read each trial's ``summary.json`` and ``history.json``
afterwards. A sweep ranks its trials (:mod:`~mfed.sweeps.report`); a benchmark adds seeds,
confidence intervals and paired tests (:mod:`~mfed.sweeps.benchmark`, :mod:`~mfed.sweeps.stats`).
"""
