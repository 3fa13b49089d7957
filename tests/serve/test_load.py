"""``lavish serve`` under a small, bounded load on 127.0.0.1: 20 requests in a row and 4 at once answer the same
JSON without a failure and without the server's memory growing; a full queue is refused with 503; a server
stopped (SIGTERM) or killed (SIGKILL) mid-request leaves no uploaded file behind. The figures are printed (run
pytest with -s to see them) and docs/serve.md quotes them."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from serve_helpers import Server, cli_json, make_clip, wait_for


@pytest.fixture(scope="module")
def checkpoint(ave_run):
    return ave_run / "best.safetensors"


@pytest.fixture(scope="module")
def ave_server(checkpoint, tmp_path_factory):
    """A server with the AVE model only, at most 4 requests admitted at once (the last test kills it)."""
    root = tmp_path_factory.mktemp("load_uploads")
    s = Server(["--checkpoint", str(checkpoint), "--max-queue", "4"], root)
    yield s
    s.stop()


def test_20_in_a_row_and_4_at_once(ave_server, checkpoint, ave_layout):
    clip = ave_layout / "AVE" / "vid_a.mp4"
    body = clip.read_bytes()
    expected = cli_json("predict", str(clip), "--checkpoint", str(checkpoint))[0]
    expected["video"] = clip.name
    rss = {}
    process = psutil.Process(ave_server.proc.pid)
    start = time.perf_counter()
    for k in range(1, 21):
        status, res = ave_server.request("api/predict", body, filename=clip.name)
        assert status == 200 and res == expected, res
        if k in (2, 20):
            rss[k] = process.memory_info().rss
    per_request = (time.perf_counter() - start) / 20
    assert rss[20] <= 1.2 * rss[2], rss

    def one(_):
        return ave_server.request("api/predict", body, filename=clip.name)

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, range(4)))
    at_once = time.perf_counter() - start
    assert [status for status, _ in answers] == [200] * 4, answers
    assert all(res == expected for _, res in answers)
    assert ave_server.uploads() == []
    print(f"\nserve load: RSS after 2 requests {rss[2] / 2**20:.1f} MiB, after 20 {rss[20] / 2**20:.1f} MiB "
          f"({rss[20] / rss[2]:.3f}x); {1000 * per_request:.0f} ms per request in a row; 4 at once: all 200, "
          f"{at_once:.2f} s in all")


def test_a_full_queue_is_refused_with_503(ave_server, tmp_path):
    long = make_clip(tmp_path / "long.mp4", 60.0)  # long enough that 4 are still running when the 5th arrives
    body = long.read_bytes()
    statuses, errors = [], []
    barrier = threading.Barrier(6)

    def one():
        barrier.wait()
        status, res = ave_server.request("api/predict", body, filename=long.name)
        statuses.append(status)
        errors.append(res.get("error"))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 200, 200, 200, 503, 503], (statuses, errors)
    assert all("server busy" in e and "--max-queue 4" in e for e in errors if e)
    status, _ = ave_server.request("api/predict", body, filename=long.name)  # and then it answers again
    assert status == 200 and ave_server.uploads() == []


def _stop_mid_request(server: Server, clip, sig: int) -> int:
    """Send ``clip``, wait until its upload is in the server's folder, send ``sig``; the exit code."""
    thread = threading.Thread(target=_quiet, args=(server.predict, clip))
    thread.start()
    uploaded = wait_for(lambda: list(server.upload_root.rglob("*.mp4")), timeout=60, every=0.005)
    assert uploaded[0].parent.parent == server.upload_root  # in the server's own folder while it runs
    code = server.stop(sig)
    thread.join(timeout=120)
    return code


def test_killed_or_stopped_mid_request_leaves_no_upload(ave_server, checkpoint, tmp_path):
    clip = make_clip(tmp_path / "long.mp4", 60.0)
    root = ave_server.upload_root
    # SIGKILL: nothing can clean up, the file stays until the next server on the same folder starts
    assert _stop_mid_request(ave_server, clip, signal.SIGKILL) == -signal.SIGKILL
    assert list(root.rglob("*.mp4"))
    again = Server(["--checkpoint", str(checkpoint)], root)
    assert not list(root.rglob("*.mp4")) and len(list(root.iterdir())) == 1  # only its own, empty folder
    # SIGTERM: a graceful stop, the request ends, then the server removes its folder and exits with 0
    assert _stop_mid_request(again, clip, signal.SIGTERM) == 0, again.lines
    assert again.lines[-1] == "stopped" and list(root.iterdir()) == []


def _quiet(call, *args):
    try:
        return call(*args)
    except OSError as err:  # the connection of a killed server
        return err
