"""The CLI entry: a bug of ours is one line and exit code 1 (the traceback behind ``--debug`` / LAVISH_DEBUG=1),
bad input is one line and exit code 2 (with the traceback under --debug), a full disk outside lavish.fileio is bad
input too, and warnings print as ``warning: <message>`` without file, line or source, Lightning's noise (notes about
lavish's own choices, INFO lines) left out, all for the command's duration only.
"""

from __future__ import annotations

import errno
import logging
import os
import warnings

import pytest

import lavish.cli.info
from lavish.cli.main import main
from lavish.errors import DataError


def _raising(err: BaseException):
    def run(args):
        warnings.warn("a note for the user\n  over two lines", UserWarning)
        raise err
    return run


def test_a_bug_is_one_line_exit_1_and_debug_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr(lavish.cli.info, "run", _raising(ValueError("shapes (2, 3) and\n(4,) differ")))
    monkeypatch.delenv("LAVISH_DEBUG", raising=False)
    assert main(["info"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: a note for the user over two lines",
                   "error: internal error: ValueError: shapes (2, 3) and (4,) differ (a bug in lavish: "
                   "`lavish --debug info ...` shows the traceback)"]

    with pytest.raises(ValueError, match="differ"):
        main(["--debug", "info"])
    monkeypatch.setenv("LAVISH_DEBUG", "1")
    with pytest.raises(ValueError, match="differ"):
        main(["info"])


def test_bad_input_is_one_line_exit_2_and_debug_adds_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr(lavish.cli.info, "run", _raising(DataError("/data/x.json: corrupt json")))
    monkeypatch.delenv("LAVISH_DEBUG", raising=False)
    assert main(["info"]) == 2
    assert capsys.readouterr().err.splitlines()[-1:] == ["error: /data/x.json: corrupt json"]
    assert main(["--debug", "info"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.splitlines()[-1] == "error: /data/x.json: corrupt json"


def test_a_full_disk_outside_fileio_is_bad_input(monkeypatch, capsys):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/a/logs/metrics.csv")
    monkeypatch.setattr(lavish.cli.info, "run", _raising(full))
    assert main(["info"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "error: cannot write /runs/a/logs/metrics.csv (No space left on device)"


def test_lightning_noise_is_filtered_and_the_filters_end_with_the_command(monkeypatch, capsys, caplog):
    def run(args):
        warnings.warn_explicit("The 'train_dataloader' does not have many workers which may be a bottleneck.",
                               UserWarning, "lightning/pytorch/trainer/connectors/data_connector.py", 1,
                               module="lightning.pytorch.trainer.connectors.data_connector")
        warnings.warn("kept")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
        return 0

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(lavish.cli.info, "run", run)
    assert main(["info"]) == 0
    assert capsys.readouterr().err.splitlines() == ["warning: kept"] and not caplog.records
    assert warnings.showwarning.__module__ != "lavish.cli.main" and not logging.root.manager.disable
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("after the command")
    assert [r.getMessage() for r in caplog.records] == ["after the command"]


def test_torch_log_lines_below_error_are_hidden_during_a_command_and_shown_with_debug(monkeypatch, capfd):
    """torch's compiler logs notes in glog format with its own file paths (e.g. "No CUDA runtime is found" while
    --fused-adapters compiles on a CPU machine): not for the user; its errors still show; --debug shows all."""
    import torch  # noqa: F401  torch sets up its log handlers on import

    def run(args):
        logging.getLogger("torch.utils.cpp_extension").warning("compiler note")
        logging.getLogger("torch._inductor.some_pass").error("compiler error")
        return 0

    monkeypatch.setattr(lavish.cli.info, "run", run)
    capfd.readouterr()
    assert main(["info"]) == 0
    err = capfd.readouterr().err
    assert "compiler note" not in err and "compiler error" in err
    assert main(["--debug", "info"]) == 0
    assert "compiler note" in capfd.readouterr().err
    logging.getLogger("torch.utils.cpp_extension").warning("after the command")
    assert "after the command" in capfd.readouterr().err
