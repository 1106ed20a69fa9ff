"""The command lines of the stages.

Every stage takes ``--params`` (default ``params.yaml``) and options naming its inputs and outputs,
all paths; so a stage's ``main`` is its argument parsing plus a call or two.

- :func:`stage_arguments`: one option per keyword, each with its default path (``group``,
  ``split``, ``acquire``, ...).
- :func:`model_stage_arguments`: the per-model stages (``pretrain``, ``finetune``, ``evaluate``)
  take ``--model`` and one option per field of their ``Paths`` dataclass (``model_out`` ->
  ``--model-out``), each defaulting to the path ``Paths.for_model`` gives.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Mapping

from stages.common.params import load_params

DEFAULT_MODEL = "covidnet_cxr_s"
DEFAULT_PARAMS = Path("params.yaml")


def _parser(description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def _path_option(parser: argparse.ArgumentParser, name: str, default: Path | None, help: str) -> None:
    """``--name`` (underscores as dashes) into ``name``: a path."""
    parser.add_argument(f"--{name.replace('_', '-')}", type=Path, dest=name, default=default, help=help)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Add ``--params`` last, parse ``argv`` and load the params."""
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="default: %(default)s")
    args = parser.parse_args(argv)
    return args, load_params(args.params)


def stage_arguments(description: str | None, argv: list[str] | None = None, *,
                    helps: Mapping[str, str] | None = None, **defaults: Path
                    ) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse ``argv`` for a stage with one path option per keyword of ``defaults``; return ``(args, params)``.

    ``stage_arguments(__doc__, argv, raw=Path("data/raw"))`` takes ``--raw`` (default
    ``data/raw``) into ``args.raw``, and ``--params``; ``helps`` adds a line of help per option.
    """
    parser = _parser(description)
    for name, default in defaults.items():
        text = (helps or {}).get(name)
        _path_option(parser, name, Path(default), f"{text}; default: %(default)s" if text else "default: %(default)s")
    return _parse(parser, argv)


def model_stage_arguments(description: str, paths_type: type, argv: list[str] | None = None
                          ) -> tuple[str, dict[str, Any], Any]:
    """Parse ``argv`` for a per-model stage; return ``(model, params, paths)``."""
    parser = _parser(description)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="an entry of `models` in params.yaml")
    defaults = paths_type.for_model("<model>")
    names = [field.name for field in dataclasses.fields(paths_type)]
    for name in names:
        _path_option(parser, name, None, f"default: {getattr(defaults, name)}")
    args, params = _parse(parser, argv)
    paths = paths_type.for_model(args.model, **{name: getattr(args, name) for name in names})
    return args.model, params, paths
