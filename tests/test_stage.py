"""ivfg.stage: how a stage script ends when something goes wrong."""
from __future__ import annotations

import pytest

from ivfg.config import ConfigError
from ivfg.data.download import DownloadError
from ivfg.errors import InputError
from ivfg.gan.training import CheckpointMismatch
from ivfg.models.weights import WeightsNotFound
from ivfg.stage import run_main


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


@pytest.mark.parametrize("error", [InputError("data/split.csv is missing"), DownloadError("checksum mismatch"),
                                   CheckpointMismatch("r1_gamma differs"), WeightsNotFound("sface.onnx")],
                         ids=lambda e: type(e).__name__)
def test_every_project_error_is_a_user_error(error, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_main("align", raising(error))
    assert exit_.value.code == 2 and capsys.readouterr().err == f"[align] error: {error}\n"


@pytest.mark.parametrize("bug", [ZeroDivisionError(), ValueError("cannot reshape"), FileNotFoundError("x.pt"),
                                 RuntimeError("torch.cat(): expected a non-empty list")], ids=lambda e: type(e).__name__)
def test_a_bug_is_not_hidden(bug):
    """Only the project's own error types are user errors: a library's ValueError keeps its traceback."""
    with pytest.raises(type(bug)):
        run_main("split", raising(bug))
