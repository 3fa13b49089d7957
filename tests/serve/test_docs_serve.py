"""docs/serve.md's curl and Python examples run as written against a live server (its address substituted) and
print the CLI's numbers; the README's section points at the screenshot; ``lavish demo`` ends with a ``lavish
serve`` command for the model it trained."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from serve_helpers import cli_json

from lavish.cli.demo import serve_command
from lavish.engine.registry import get_task
from lavish.cli.main import build_parser
from lavish.serve.models import load_models

ROOT = Path(__file__).resolve().parents[2]
DOC_URL = "http://127.0.0.1:7860/"


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_curl_and_python_examples_run_as_written(server, models, tmp_path, capsys):
    doc = (ROOT / "docs" / "serve.md").read_text()
    api = doc.split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    (curl_block,) = _blocks(api, "bash")
    (python_block,) = _blocks(api, "python")
    video = tmp_path / "my_video.mp4"
    shutil.copy(models.clips["ave"], video)
    cli = cli_json("predict", str(video), "--checkpoint", str(models.checkpoints["ave"]))[0]

    out = subprocess.run(["bash", "-c", curl_block.replace(DOC_URL, server.url)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {**cli, "video": "my_video.mp4"}

    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        capsys.readouterr()
        exec(compile(python_block.replace(DOC_URL, server.url), "<docs/serve.md>", "exec"), {"__name__": "doc"})
    finally:
        os.chdir(here)
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [f"{s['second']} {s['label']} {s['probability']}" for s in cli["seconds"]]


def test_readme_shows_the_page():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## See it in a browser", 1)[1].split("\n## ", 1)[0]
    assert "lavish serve --checkpoint" in section and "docs/serve.md" in section
    (image,) = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", section)
    assert (ROOT / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_ends_with_the_serve_command_of_its_model(ave_run, ave_layout, tmp_path):
    out = tmp_path / "lavish-demo"  # what `lavish demo` leaves: runs/av/best.safetensors, data/AVE/*.mp4
    (out / "runs" / "av").mkdir(parents=True)
    shutil.copy(ave_run / "best.safetensors", out / "runs" / "av" / "best.safetensors")
    shutil.copytree(ave_layout / "AVE", out / "data" / "AVE")
    line = serve_command(out, get_task("ave"))
    words = shlex.split(line)
    assert words == ["lavish", "serve", "--checkpoint", str(out / "runs" / "av" / "best.safetensors"),
                     "--examples", str(out / "data" / "AVE")]
    assert serve_command(out, get_task("avqa")) is None  # an AVE file is never offered as another task's model
    args = build_parser().parse_args(words[1:])  # the command as lavish parses it, and its model loads
    assert args.func.__module__ == "lavish.cli.serve" and args.host == "127.0.0.1" and args.port == 7860
    assert load_models(args.checkpoint)[0].task == "ave"
