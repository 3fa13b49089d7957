"""``lavish serve`` refusals: one ``error:`` line, exit code 2, before anything listens; the missing extra is
named with its install command."""

from __future__ import annotations

import socket
import sys

import pytest

from lavish.cli.main import main


def _refused(capsys, argv, *words) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in words:
        assert word in err[0], (word, err[0])


def test_bad_settings_are_refused_in_one_line(ave_run, tmp_path, capsys):
    ckpt = str(ave_run / "best.safetensors")
    _refused(capsys, ["serve", "--checkpoint", ckpt, "--max-upload-mb", "0"], "--max-upload-mb 0")
    _refused(capsys, ["serve", "--checkpoint", ckpt, "--max-duration-s", "-1"], "--max-duration-s -1")
    _refused(capsys, ["serve", "--checkpoint", ckpt, "--max-queue", "0"], "--max-queue 0")
    _refused(capsys, ["serve", "--checkpoint", ckpt, "--examples", str(tmp_path / "nope")], "nope", "not a folder")
    _refused(capsys, ["serve", "--checkpoint", ckpt, "--port", "70000"], "--port 70000")
    _refused(capsys, ["serve", "--checkpoint", str(tmp_path / "absent.safetensors"), "--port", "0"],
             "absent.safetensors")
    with socket.socket() as taken:  # a port in use: refused before the models load
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        _refused(capsys, ["serve", "--checkpoint", ckpt, "--port", str(port)], f"127.0.0.1:{port}", "--port")


@pytest.mark.parametrize("package", ["fastapi", "uvicorn"])
def test_missing_extra_names_the_install_command(ave_run, capsys, monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # what Python does for a package that is not installed
    _refused(capsys, ["serve", "--checkpoint", str(ave_run / "best.safetensors")], package,
             'pip install -e ".[serve]"')
