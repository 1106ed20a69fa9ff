"""The command line of the per-model stages (``pretrain``, ``finetune``, ``evaluate``).

Each of them takes ``--model``, ``--params`` and one option per field of its ``Paths`` dataclass
(``model_out`` -> ``--model-out``), each defaulting to the path ``Paths.for_model`` gives; so a
stage's ``main`` is its argument parsing plus one call to its ``run(params, model, paths)``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from stages.common.params import load_params

DEFAULT_MODEL = "covidnet_cxr_s"


def model_stage_arguments(description: str, paths_type: type, argv: list[str] | None = None
                          ) -> tuple[str, dict[str, Any], Any]:
    """Parse ``argv`` for a per-model stage; return ``(model, params, paths)``."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="an entry of `models` in params.yaml")
    defaults = paths_type.for_model("<model>")
    names = [field.name for field in dataclasses.fields(paths_type)]
    for name in names:
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, dest=name,
                            help=f"default: {getattr(defaults, name)}")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    paths = paths_type.for_model(args.model, **{name: getattr(args, name) for name in names})
    return args.model, load_params(args.params), paths
