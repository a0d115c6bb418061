"""Plumbing shared by the stage scripts (stages/): logging and clean exits on user errors and Ctrl-C."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from ivfg.config import ConfigError
from ivfg.data.download import DownloadError

USER_ERRORS = (ConfigError, DownloadError, FileNotFoundError, ValueError)


def run_main(stage: str, main: Callable[[], None]) -> None:
    """Run a stage; a user error prints one clear line instead of a traceback."""
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(message)s")
    try:
        main()
    except USER_ERRORS as exc:
        print(f"[{stage}] error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print(f"[{stage}] stopped: {exc or 'interrupted'}", file=sys.stderr)
        sys.exit(130)  # the shell's code for Ctrl-C: DVC records nothing, a rerun resumes
