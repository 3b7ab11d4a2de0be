"""The paper's figures, regenerated from the data that ``python -m proofs_checks`` saves under ``results/``.

One script per figure, ``figures/fig_*.py``, exposing ``NAME``, ``CLAIMS`` and ``make(results_dir, outdir)``;
:func:`figures.make_all.make_all` (or ``python -m figures``) finds and runs them. Scripts share the look of
:mod:`figures._style` and never compute estimators.
"""
