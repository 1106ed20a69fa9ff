"""Data sources: each writes or reads the raw layout of ``stages.schema``.

``SOURCES`` names every source ``acquire`` can build (``data.source`` in params.yaml). Adding a
source: an adapter module here with ``build(staging, downloads, params) -> dict``, one line in
``SOURCES`` below, and its title in ``schema.SOURCE_TITLES``, which every report reads.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from stages import schema


@dataclass(frozen=True)
class Source:
    """One source and its adapter ``module``, whose ``build(staging, downloads, params)`` writes the
    raw layout into ``staging`` (``downloads`` keeps verified downloads between runs; ``params`` is
    all of params.yaml) and returns the summary that ``SOURCE.json`` also holds."""

    name: str
    title: str  # how every heading that shows the source's numbers names it
    module: str
    # How ingest numbers the images of a study (the ``-<i>`` of their names; see
    # covidnet_files.image_order_in_study): the real cohort as COVID-Net numbered its download,
    # whichever service delivered the files; the phantom as it names its own files and crop boxes.
    image_order: str

    def build(self, staging: Path, downloads: Path, params: dict) -> dict:
        # Imported on first use: the stages that only read a format (covidx, mdai) import this
        # package too, and must neither load nor, for DVC, depend on the phantom's renderer or
        # the downloaders. acquire lists this whole folder among its deps.
        return importlib.import_module(self.module).build(staging, downloads, params)


SOURCES: dict[str, Source] = {
    name: Source(name, schema.SOURCE_TITLES[name], module, image_order)
    for name, module, image_order in (
        ("synthetic", "stages.sources.phantom", "series_uid"),
        ("ricord", "stages.sources.ricord", "data_retriever"),
    )
}
if set(SOURCES) != set(schema.SOURCE_TITLES):
    raise ImportError(f"schema.SOURCE_TITLES {sorted(schema.SOURCE_TITLES)} and stages.sources.SOURCES "
                      f"{sorted(SOURCES)} name different sources")
