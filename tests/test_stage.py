"""ivfg.stage: how a stage script ends when something goes wrong."""
from __future__ import annotations

import pytest

from ivfg.stage import run_main
from ivfg.config import ConfigError


def raising(exc: BaseException):
    def main() -> None:
        raise exc
    return main


def test_a_user_error_is_one_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_main("split", raising(ConfigError("split.seed: expected an integer")))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "[split] error: split.seed: expected an integer\n"


def test_ctrl_c_exits_130_with_what_was_saved(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_main("pretrain_gan", raising(KeyboardInterrupt("interrupted at 0.5 kimg; checkpoint written")))
    assert exit_.value.code == 130
    assert "[pretrain_gan] stopped: interrupted at 0.5 kimg; checkpoint written" in capsys.readouterr().err


def test_a_bug_is_not_hidden():
    with pytest.raises(ZeroDivisionError):
        run_main("split", raising(ZeroDivisionError()))
