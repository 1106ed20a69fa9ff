"""Checks that the numbers this project reports are the numbers its code produces.

- ``reported``: every number of the README's results section and of ``reports/results.md``
  against ``metrics/`` (and ``paper.yaml``); also regenerates the README section.
- ``reproduce``: the committed pipeline outputs and ``dvc.lock`` against a clean ``dvc repro``.
"""
