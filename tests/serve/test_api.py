"""The HTTP API of ``lavish serve`` from Python and from curl: the same JSON as ``lavish predict --json`` /
``lavish ask --json`` for every task, and every refusal as one line with its status; nothing left in the upload
folder after any request."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from serve_helpers import audio_only, cli_json, make_clip


def _without_video(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != "video"}


def _png(data_url: str) -> np.ndarray:
    head, payload = data_url.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def test_info_lists_the_models_limits_and_examples(server, models):
    status, info = server.request("api/info")
    assert status == 200
    assert [(m["id"], m["task"]) for m in info["models"]] == [("0", "ave"), ("1", "avqa"), ("2", "avs"),
                                                              ("3", "avvp"), ("4", "classify")]
    assert info["models"][0]["classes"] == ["Bark", "Cat", "background"] and info["models"][1]["asks"]
    assert info["limits"] == {"max_upload_mb": 1.0, "max_duration_s": 12.0, "max_queue": 8}
    assert info["examples"] == ["example_clip.mp4"]  # the symbolic link to a file outside is not listed


@pytest.mark.parametrize("task", ["ave", "avvp"])
def test_predict_equals_the_cli(server, models, task):
    clip = models.clips[task]
    status, res = server.predict(clip, model=server.ids[task])
    assert status == 200, res
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints[task]))
    assert len(cli) == 1 and res["video"] == clip.name
    assert _without_video(res) == _without_video(cli[0])
    assert len(res["seconds"]) == int(cli[0]["duration"])
    assert server.uploads() == []


def test_ask_equals_the_cli(server, models):
    clip = models.clips["avqa"]
    status, res = server.predict(clip, model=server.ids["avqa"], question=models.question)
    assert status == 200, res
    cli = cli_json("ask", str(clip), models.question, "--checkpoint", str(models.checkpoints["avqa"]))
    assert _without_video(res) == _without_video(cli) and res["video"] == clip.name
    assert len(res["answers"]) == 5 and len(res["segments"]) == 10
    status, top2 = server.predict(clip, model=server.ids["avqa"], question=models.question, top=2)
    assert status == 200 and top2["answers"] == cli["answers"][:2]
    assert server.uploads() == []


def test_classify_top_labels_equal_the_cli_and_take_top(server, models):
    clip = models.clips["classify"]
    status, res = server.predict(clip, model=server.ids["classify"])
    assert status == 200, res
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints["classify"]))[0]
    assert _without_video(res) == _without_video(cli) and len(res["top_k"]) == 4  # 4 classes: top 5 -> all 4
    status, top2 = server.predict(clip, model=server.ids["classify"], top=2)
    assert status == 200 and top2["top_k"] == cli["top_k"][:2]
    status, body = server.predict(models.clips["ave"], model="0", top=2)  # AVE lists no top labels
    assert status == 400 and "top= does not apply" in body["error"]
    assert server.uploads() == []


def test_avs_masks_equal_the_cli_files(server, models, tmp_path):
    clip = models.clips["avs"]
    status, res = server.predict(clip, model=server.ids["avs"])
    assert status == 200, res
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints["avs"]), "--out",
                   str(tmp_path / "masks"))[0]
    assert res["coverage"] == cli["coverage"] and len(res["masks"]) == len(cli["masks"]) == 5
    for url, path in zip(res["masks"], cli["masks"]):
        assert np.array_equal(_png(url), np.asarray(Image.open(path)))
    assert np.array_equal(_png(res["sheet"]), np.asarray(Image.open(cli["sheet"])))
    assert {k for k in res} == {k for k in cli}
    assert server.uploads() == []


def test_curl_equals_the_cli(server, models):
    curl = shutil.which("curl")
    assert curl, "curl is needed (.ci/run installs it)"
    clip = models.clips["ave"]
    out = subprocess.run([curl, "-sS", "--data-binary", f"@{clip}", "-H", "Content-Type: application/octet-stream",
                          f"{server.url}api/predict?model=0&filename={clip.name}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints["ave"]))[0]
    assert _without_video(json.loads(out.stdout)) == _without_video(cli)
    # the example clips run without an upload
    out = subprocess.run([curl, "-sS", "-X", "POST", f"{server.url}api/predict?model=0&example=example_clip.mp4"],
                         capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout)["video"] == "example_clip.mp4" and len(json.loads(out.stdout)["seconds"]) == 4
    # over --max-upload-mb 1: refused before the body is read
    big = server.upload_root.parent / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(1_500_000))
    out = subprocess.run([curl, "-sS", "-w", "\n%{http_code}", "--data-binary", f"@{big}",
                          f"{server.url}api/predict?model=0&filename=big.mp4"], capture_output=True, text=True,
                         timeout=120)
    body, code = out.stdout.rsplit("\n", 1)
    assert code == "413" and "big.mp4" in json.loads(body)["error"] and "--max-upload-mb" in json.loads(body)["error"]
    assert server.uploads() == []


def test_refusals_are_one_line_and_the_server_goes_on(server, models, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is text, not a video\n")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(models.clips["ave"].read_bytes()[:3000])
    cases = [
        (server.predict(text, model="0"), 422, "notes.mp4: not a readable media file"),
        (server.predict(truncated, model="0"), 422, "truncated.mp4"),
        (server.predict(audio_only(tmp_path / "sound.mp4"), model="0"), 422, "no video stream"),
        (server.predict(make_clip(tmp_path / "long.mp4", 15.0), model="0"), 413, "--max-duration-s"),
        (server.predict(models.clips["ave"], model="9"), 404, "no model '9'"),
        (server.predict(models.clips["ave"]), 400, "several models"),
        (server.predict(models.clips["ave"], model="0", question="Is it a dog?"), 400, "does not apply"),
        (server.predict(models.clips["avqa"], model="1"), 400, "ask a question"),
        (server.predict(models.clips["avqa"], model="1", question="   "), 400, "question"),
        (server.request("api/predict", method="POST", model="0", example="../secret.mp4"), 404, "no example"),
        (server.request("api/predict", method="POST", model="0", example="link.mp4"), 404, "no example"),
        (server.request("examples/link.mp4"), 404, "no example"),
        (server.request("examples/%2e%2e/secret.mp4"), 404, "no example"),
    ]
    for (status, body), want_status, want in cases:
        assert status == want_status, body
        assert set(body) == {"error"} and want in body["error"] and "\n" not in body["error"], body
        assert str(server.upload_root) not in body["error"], body  # the client's name, never the server's path
    status, res = server.predict(models.clips["ave"], model="0")  # and the next request works
    assert status == 200 and len(res["seconds"]) == 10
    assert server.uploads() == []
