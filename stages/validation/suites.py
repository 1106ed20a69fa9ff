"""Great Expectations suites for the pipeline's tables, and a deterministic summary of their results.

Four suites, one per table: ``severity_images``, ``pretrain_images``, ``labels`` and ``split``, and
a fifth, ``paper_cohort``, when the cohort is meant to be the paper's (RICORD with the reference
split): its counts must equal ``stages/reference/paper.yaml`` exactly.
Every check is a real GE 1.x expectation validated by an ephemeral context on a pandas batch. Checks
that are not about single values of the table (no patient in two splits, enough images of each
level in each split, no identifying DICOM header columns) run on small *derived* tables (one row per
patient, per split and level, per column name), so GE still expresses and evaluates them.

This module assembles the suites and is the package's entry point (:func:`run_all`); the pieces
live beside it: :mod:`~stages.validation.expectations` (the suite model and shared check helpers),
:mod:`~stages.validation.severity` (``severity_images`` and ``labels``),
:mod:`~stages.validation.pretraining` (``pretrain_images``), :mod:`~stages.validation.cohort`
(``split`` and ``paper_cohort``) and :mod:`~stages.validation.runner` (GE validation and the
summary). The summary holds no timestamps, run ids, versions or random ids, so identical tables
give byte-identical JSON; offending rows are named by their ids (``image_id``, ``patient_id``...),
never by pixel data.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from stages.validation.cohort import PAPER_COHORT_SUITE, paper_cohort_suite, split_suite
from stages.validation.expectations import Inputs, SuiteSpec
from stages.validation.pretraining import pretrain_images_suite
from stages.validation.runner import ValidationFailed, Validator, failure_lines, raise_if_failed
from stages.validation.severity import labels_suite, severity_images_suite

__all__ = ["SUITE_NAMES", "PAPER_COHORT_SUITE", "Inputs", "ValidationFailed", "build_suites", "run_all",
           "failure_lines", "raise_if_failed"]

SUITE_NAMES = ("severity_images", "pretrain_images", "labels", "split")


def build_suites(tables: dict[str, pd.DataFrame], params: dict[str, Any],
                 inputs: Inputs = Inputs()) -> list[SuiteSpec]:
    """The four table suites (``rejects`` is optional), then ``paper_cohort`` when asked for."""
    missing = [name for name in SUITE_NAMES if name not in tables]
    if missing:
        raise KeyError(f"validate: tables missing: {missing}")
    suites = [
        severity_images_suite(tables["severity_images"], params, inputs),
        pretrain_images_suite(tables["pretrain_images"], params, inputs, tables.get("rejects")),
        labels_suite(tables["labels"], tables["severity_images"], params),
        split_suite(tables["split"], tables["labels"], params),
    ]
    if inputs.paper_cohort is not None:
        suites.append(paper_cohort_suite(tables["split"], inputs.paper_cohort))
    return suites


def run_all(tables: dict[str, pd.DataFrame], params: dict[str, Any],
            inputs: Inputs = Inputs()) -> dict[str, dict[str, Any]]:
    """Run every suite; per suite a JSON-able result (no raising: the caller writes them first)."""
    validator = Validator()
    return {suite.name: validator.run(suite) for suite in build_suites(tables, params, inputs)}
