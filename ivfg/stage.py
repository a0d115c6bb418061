"""Plumbing shared by the stage scripts (stages/): logging and clean exits on user errors and Ctrl-C."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Callable, TypeVar

from ivfg.errors import IvfgError
P = TypeVar("P")


def add_path_arguments(parser: argparse.ArgumentParser, paths: type) -> None:
    """One --option per field of a paths dataclass (underscores as dashes), defaulting to the field's value."""
    for field in dataclasses.fields(paths):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=Path, default=field.default)


def paths_from(args: argparse.Namespace, paths: type[P]) -> P:
    return paths(**{field.name: getattr(args, field.name) for field in dataclasses.fields(paths)})


def run_main(stage: str, main: Callable[[], None]) -> None:
    """Run a stage; the project's own errors (bad params, inputs, checkpoints) print one clear line;
    anything else is a bug and keeps its traceback."""
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(message)s")
    try:
        main()
    except IvfgError as exc:
        print(f"[{stage}] error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print(f"[{stage}] stopped: {exc or 'interrupted'}", file=sys.stderr)
        sys.exit(130)  # the shell's code for Ctrl-C: DVC records nothing, a rerun resumes
