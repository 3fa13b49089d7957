"""Helpers of the ``lavish serve`` tests (a uniquely named module: tests/*/conftest.py are all ``conftest``).

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


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from ave_layout import write_mp4  # noqa: E402

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


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")
