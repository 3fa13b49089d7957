"""Fixtures of the ``lavish serve`` tests: tiny trained models of every task, their clips, a running server
(serve_helpers.py says how)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from avqa_layout import MICRO, make_avqa_layout, prepare_avqa_cache  # noqa: E402
from serve_helpers import SWIN_MICRO, Models, Server, make_clip  # noqa: E402

from lavish.cli.main import main  # noqa: E402

TASKS = ("ave", "avqa", "avs", "avvp", "classify")
"""the served models, in the order of the server's --checkpoint options (their ids)"""


@pytest.fixture(scope="session")
def models(ave_run, ave_layout, tmp_path_factory) -> Models:
    from PIL import Image

    from lavish.tasks.avs.layout import read_avs
    from lavish.tasks.avs.synthetic import make_synthetic_avs
    from lavish.tasks.avvp.synthetic import make_synthetic_llp
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
    # classify: a tiny folder-per-class set, two epochs
    from lavish.tasks.classify.synthetic import make_synthetic_classify

    folder = make_synthetic_classify(root / "classify", layout="folder", num_videos=12, num_classes=4,
                                     duration_s=2.0, size=32, seed=4, progress=False)
    assert main(["prepare", "classify", "--root", str(folder), "--out", str(root / "classify-cache"), "--backbone",
                 MICRO, "--segments", "2", "--no-progress"]) == 0
    assert main(["train", "classify", "--data", str(root / "classify-cache"), "--out", str(root / "classify-run"),
                 "--backbone", MICRO, "--no-pretrained", "--epochs", "2", "--batch-size", "4", "--lr", "1e-3",
                 "--lr-head", "1e-3", "--no-progress"]) == 0
    classify_clip = sorted((folder / "test").rglob("*.mp4"))[0]
    checkpoints = {"ave": ave_run / "best.safetensors", "avqa": root / "avqa-run" / "best.safetensors",
                   "avs": root / "avs-run" / "best.safetensors", "avvp": root / "avvp-run" / "best.safetensors",
                   "classify": root / "classify-run" / "best.safetensors"}
    clips = {"ave": ave_layout / "AVE" / "vid_a.mp4", "avqa": avqa_clip, "avs": avs_clip, "avvp": avvp_clip,
             "classify": classify_clip}
    return Models(checkpoints, clips, question, root)


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
    """One server with the five models (AVE first), the examples, and small limits the tests hit: 1 MB uploads,
    12 s videos."""
    upload_root = tmp_path_factory.mktemp("serve_uploads")
    args = []
    for task in TASKS:
        args += ["--checkpoint", str(models.checkpoints[task])]
    s = Server([*args, "--examples", str(examples), "--max-upload-mb", "1", "--max-duration-s", "12"], upload_root)
    s.ids = {task: str(k) for k, task in enumerate(TASKS)}
    yield s
    assert s.stop() == 0, "\n".join(s.lines)
    assert not list(upload_root.iterdir()), "the server left its upload folder behind"


