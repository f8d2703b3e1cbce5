"""The command line's error contract: user errors are one line and exit 2, bugs keep their traceback."""

import pytest

from mobilevit.cli import build_parser, main
from mobilevit.cli import models as models_command
from mobilevit.engine import TrainingError


def test_user_errors_are_one_line_and_bugs_are_not_hidden(monkeypatch, capsys):
    def user_error(args):
        raise TrainingError("the run cannot go on")

    monkeypatch.setattr(models_command, "run", user_error)
    assert main(["models"]) == 2
    assert capsys.readouterr().err.strip() == "mobilevit models: error: the run cannot go on"

    def bug(args):
        raise KeyError("a bug")

    monkeypatch.setattr(models_command, "run", bug)
    with pytest.raises(KeyError):
        main(["models"])


def test_every_command_has_its_module():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {
        "models",
        "weights",
        "bench",
        "convert",
        "export",
        "push-to-hub",
        "train",
        "eval",
        "predict",
        "ablate",
    }
