"""The project's own error types. Stages and the `ivfg` command show these as one line (the message
names the file or parameter and what to do); any other exception is a bug and keeps its traceback."""
from __future__ import annotations


class IvfgError(Exception):
    """A problem with what the user gave: params, input files, keys, a checkpoint from other settings."""


class InputError(IvfgError):
    """An input file that is missing, malformed or too small to work with."""
