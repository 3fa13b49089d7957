"""Fixtures of the ``lavish serve`` tests: tiny trained models of every task, their clips, a running server.

The models are trained here through the real CLI (AVE: the session run of tests/conftest.py; AVQA, AVS, AVVP: one
short epoch on tiny synthetic datasets, as tests/cli/test_avqa_cli.py, test_avs_cli.py and test_avvp_cli.py do).
A server is ``python -m lavish serve`` in a subprocess on a free loopback port (``--port 0``: it prints the URL),
with the test's environment (so ``PYTHONPATH`` reaches it) and its own ``--upload-dir``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from ave_layout import write_mp4  # noqa: E402
from avqa_layout import MICRO, make_avqa_layout, prepare_avqa_cache  # noqa: E402

from lavish.cli.main import main  # noqa: E402

SWIN_MICRO = "lavish_swinv2_micro_window4_64"
#: where screenshots of the page go (CI keeps the folder as an artifact); LAVISH_TEST_ARTIFACTS overrides it
ARTIFACTS = Path(os.environ.get("LAVISH_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


@dataclass
class Models:
    """Adapter files of the four tasks and a clip for each."""

    checkpoints: dict[str, Path]
    clips: dict[str, Path]
    question: str
    root: Path
    extra: dict = field(default_factory=dict)


@pytest.fixture(scope="session")
def models(ave_run, ave_layout, tmp_path_factory) -> Models:
    from PIL import Image

    from lavish.data.avs import read_avs
    from lavish.data.synthetic_avs import make_synthetic_avs
    from lavish.data.synthetic_llp import make_synthetic_llp
    from lavish.media.decode import read_audio
    from lavish.media.writer import write_video

    root = tmp_path_factory.mktemp("serve_models")
    # AVQA: a tiny MUSIC-AVQA layout, one epoch
    avqa = make_avqa_layout(root / "avqa")
    cache = prepare_avqa_cache(avqa, root / "avqa-cache")
    assert main(["train", "avqa", "--data", str(cache), "--out", str(root / "avqa-run"), "--backbone", MICRO,
                 "--no-pretrained", "--epochs", "1", "--batch-size", "4", "--no-progress"]) == 0
    record = next(r for r in json.loads((avqa / "avqa-test.json").read_text()) if "<" not in r["question_content"])
    question = record["question_content"]
    avqa_clip = avqa / "videos" / f"{record['video_id']}.mp4"
    # AVS: a tiny S4 layout, one epoch; the clip is a test record's frames and sound, as test_avs_cli.py makes it
    avs = make_synthetic_avs(root / "avs", num_videos=6, num_classes=2)
    assert main(["prepare", "avs", "--root", str(avs), "--out", str(root / "avs-cache"), "--backbone", SWIN_MICRO,
                 "--no-progress"]) == 0
    assert main(["train", "avs", "--data", str(root / "avs-cache"), "--out", str(root / "avs-run"), "--subset", "s4",
                 "--backbone", SWIN_MICRO, "--no-pretrained", "--epochs", "1", "--batch-size", "2",
                 "--decoder-channels", "8", "--no-progress"]) == 0
    rec = next(r for r in read_avs(avs, "s4") if r.split == "test")
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in rec.frames])
    avs_clip = write_video(root / "avs_clip.mp4", np.repeat(frames, 2, axis=0), 2, read_audio(rec.audio))
    # AVVP: a tiny LLP layout, one epoch
    llp = make_synthetic_llp(root / "llp", num_train=6, num_val=2, num_test=2, num_classes=3, seed=3)
    assert main(["prepare", "avvp", "--root", str(llp), "--out", str(root / "avvp-cache"), "--backbone", MICRO,
                 "--no-progress"]) == 0
    assert main(["train", "avvp", "--data", str(root / "avvp-cache"), "--out", str(root / "avvp-run"), "--backbone",
                 MICRO, "--no-pretrained", "--epochs", "1", "--batch-size", "3", "--lr", "1e-3", "--lr-head", "1e-3",
                 "--no-progress"]) == 0
    avvp_clip = sorted((llp / "LLP_dataset" / "video").glob("*.mp4"))[0]
    checkpoints = {"ave": ave_run / "best.safetensors", "avqa": root / "avqa-run" / "best.safetensors",
                   "avs": root / "avs-run" / "best.safetensors", "avvp": root / "avvp-run" / "best.safetensors"}
    clips = {"ave": ave_layout / "AVE" / "vid_a.mp4", "avqa": avqa_clip, "avs": avs_clip, "avvp": avvp_clip}
    return Models(checkpoints, clips, question, root)


def cli_json(*argv: str) -> object:
    """What ``lavish ARGV --json`` prints (the CLI's ``main``, run in this process: the same command as typed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json"])
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())


def make_clip(path: Path, seconds: float, seed: int = 7) -> Path:
    """A generated mp4 with sound (tests/data/ave_layout.py's writer)."""
    write_mp4(path, seed, seconds=seconds)
    return path


def audio_only(path: Path) -> Path:
    """A valid media file without a video stream (a 16-bit PCM wav, whatever its name)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
    from media_gen import tone, write_wav

    return write_wav(path, tone(440.0, 2.0, 16000), 16000)


class Server:
    """``python -m lavish serve ARGS --port 0 --upload-dir DIR`` in a subprocess; :attr:`url` once it listens."""

    def __init__(self, args: list[str], upload_root: Path) -> None:
        self.upload_root = upload_root
        self.proc = subprocess.Popen([sys.executable, "-m", "lavish", "serve", *args, "--port", "0",
                                      "--upload-dir", str(upload_root)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
        self.lines: list[str] = []
        found: queue.Queue = queue.Queue()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.startswith("serving on "):
                    found.put(line.split()[2])
            found.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            self.url = found.get(timeout=180)
        except queue.Empty:
            self.url = None
        if self.url is None:
            self.stop()
            raise AssertionError("lavish serve did not start:\n" + "\n".join(self.lines))
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def request(self, path: str, body: bytes | None = None, method: str | None = None, **query) -> tuple[int, dict]:
        """(status, JSON body) of a request to the server."""
        url = self.url + path.lstrip("/") + ("?" + urllib.parse.urlencode(query) if query else "")
        req = urllib.request.Request(url, data=body, method=method or ("POST" if body is not None else "GET"),
                                     headers={"Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def predict(self, clip: Path, **query) -> tuple[int, dict]:
        return self.request("api/predict", clip.read_bytes(), filename=clip.name, **query)

    def uploads(self) -> list[Path]:
        """Everything under the upload root except the server's own (empty) folder."""
        return [p for p in self.upload_root.rglob("*") if not (p.is_dir() and p.parent == self.upload_root)]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="session")
def examples(tmp_path_factory) -> Path:
    """A folder of example clips, next to a file that must never be served."""
    root = tmp_path_factory.mktemp("serve_examples")
    folder = root / "examples"
    folder.mkdir()
    make_clip(folder / "example_clip.mp4", 4.0, seed=11)
    (root / "secret.mp4").write_bytes(b"outside the examples folder")
    (folder / "link.mp4").symlink_to(root / "secret.mp4")
    return folder


@pytest.fixture(scope="session")
def server(models, examples, tmp_path_factory):
    """One server with the four models (AVE first), the examples, and small limits the tests hit: 1 MB uploads,
    12 s videos."""
    upload_root = tmp_path_factory.mktemp("serve_uploads")
    args = []
    for task in ("ave", "avqa", "avs", "avvp"):
        args += ["--checkpoint", str(models.checkpoints[task])]
    s = Server([*args, "--examples", str(examples), "--max-upload-mb", "1", "--max-duration-s", "12"], upload_root)
    s.ids = {task: str(k) for k, task in enumerate(("ave", "avqa", "avs", "avvp"))}
    yield s
    assert s.stop() == 0, "\n".join(s.lines)
    assert not list(upload_root.iterdir()), "the server left its upload folder behind"


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")
