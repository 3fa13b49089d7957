"""Every row config under configs/ runs: `lavish train TASK --config FILE` makes one real training step on a micro
backbone (given on the command line, which wins over the file's backbone), and `lavish info --config FILE` on the
row's real backbone gives the trainable count that the file's first comment line states (within 3%).

The files are found by glob (configs/<task>/*.yaml), so a new row is tested without an edit here. One tiny prepared
cache per task (per AVSBench subset) serves every row of that task; its train split is one batch, so one epoch is
one optimiser step. The AVE cache holds extra per-second audio features (prepared with ``--extra-audio-features``
from an h5 file made here), so the Table 8 row runs as the others do; rows without them ignore them.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks" / "ave"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks" / "avqa"))

from ave_layout import ROWS as AVE_ROWS  # noqa: E402
from ave_layout import make_layout  # noqa: E402
from avqa_layout import make_avqa_layout, prepare_avqa_cache  # noqa: E402
from lavish.cli.main import main  # noqa: E402
from lavish.engine.registry import TASKS  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ROWS = sorted(CONFIGS.glob("*/*.yaml"))
MICRO = {"ave": "lavish_vit_micro_patch8_64", "avqa": "lavish_vit_micro_patch8_64",
         "avs": "lavish_swinv2_micro_window4_64", "classify": "lavish_vit_micro_patch8_64"}
#: the first number of millions in the first line's parentheses: "(10.1M / 238.8M)", "(4.7M trainable / ...)", "(8.9M)"
PAPER_COUNT = re.compile(r"\((\d+(?:\.\d+)?)M(?: trainable)?\s*[/)]")
#: a row whose paper count no setting gives says so in a comment: "ours 9.89M" (and docs/accounting.md says why)
OUR_COUNT = re.compile(r"\bours (\d+(?:\.\d+)?)M\b")
EXTRA_DIM = 128  # the release's VGGish features: (rows, 10, 128)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Micro models run tiny ops, where a second intra-op thread costs more than it gives: on the shared 2-core dev
    machine this module took about 7 min with torch's 2 threads and 1.3 min with one. Restored after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def task_of(path: Path) -> str:
    return path.parent.name


def stated_count(path: Path) -> float | None:
    """Trainable parameters (millions) the row states: its own documented count if it has one, else the paper's."""
    lines = path.read_text().splitlines()
    ours = [m.group(1) for line in lines if line.startswith("#") for m in [OUR_COUNT.search(line)] if m]
    if ours:
        return float(ours[0])
    paper = PAPER_COUNT.search(lines[0])
    return float(paper.group(1)) if paper else None


def test_row_files_are_found_and_each_names_its_row():
    assert {task_of(p) for p in ROWS} <= set(TASKS)
    assert len([p for p in ROWS if task_of(p) == "avs"]) >= 2 and len([p for p in ROWS if task_of(p) == "avqa"]) >= 2
    for path in ROWS:
        assert path.read_text().startswith("# "), f"{path}: the first line is a comment naming the row"
    counts = {f"{task_of(p)}/{p.stem}": stated_count(p) for p in ROWS}
    assert (counts["ave/table1_swinv2_l"], counts["avs/table2_s4"], counts["avqa/table3_avqa"]) == (10.1, 37.2, 21.09)


def test_stated_count_reads_the_styles_of_the_first_line(tmp_path):
    cases = {"# Table 1, ViT-B-16: paper 75.3 (4.7M trainable / 107.2M total)": 4.7,
             "# Table 1, Swin-V2-L: paper 81.1 (10.1M / 238.8M); the default": 10.1,
             "# Table 6, Compacter: paper 78.4 (3.7M)": 3.7,
             "# Table 7, vision-only: paper 75.3 on AVE": None,
             "# Table 3: paper Audio 77.15 / Visual 77.37 (21.09M trainable / 249.8M total)": 21.09}
    for line, count in cases.items():
        (tmp_path / "row.yaml").write_text(line + "\nbackbone: x\n")
        assert stated_count(tmp_path / "row.yaml") == count, line
    (tmp_path / "row.yaml").write_text("# Table 6, Adapter: paper 79.1 (8.9M)\n# ours 9.89M: see docs\nbackbone: x\n")
    assert stated_count(tmp_path / "row.yaml") == 9.89


# ------------------------------------------------------------------------------------------------- tiny caches
def _prepare(task: str, root: Path, out: Path, *extra: str) -> Path:
    assert main(["prepare", task, "--root", str(root), "--out", str(out), "--backbone", MICRO[task],
                 "--no-progress", *extra]) == 0
    return out


def _ave_cache(root: Path) -> Path:
    """3 videos (train / val / test: one each) with extra audio features from an h5 file indexed by row."""
    import h5py

    rows = AVE_ROWS[:3]
    layout = make_layout(root / "ave", rows, {"train": [0], "val": [1], "test": [2]})
    h5 = root / "audio_feature.h5"
    with h5py.File(h5, "w") as f:
        f["avadataset"] = np.random.default_rng(0).standard_normal((len(rows), 10, EXTRA_DIM)).astype(np.float32)
    return _prepare("ave", layout, root / "ave-cache", "--extra-audio-features", str(h5))


def _avs_cache(root: Path, subset: str) -> Path:
    from lavish.tasks.avs.synthetic import make_synthetic_avs

    data = make_synthetic_avs(root / f"avs-{subset}", num_videos=6, num_classes=2, subset=subset)
    return _prepare("avs", data, root / f"avs-{subset}-cache")


def _avqa_cache(root: Path) -> Path:
    """The synthetic MUSIC-AVQA layout cut to a question per video, each with another answer: 2 for training
    (negatives come from another video; the head needs 2 answers), 1 each for val and test."""
    layout = make_avqa_layout(root / "avqa", num_videos=5)
    for split, keep in (("train", 2), ("val", 1), ("test", 1)):
        path = layout / f"avqa-{split}.json"
        chosen: list[dict] = []
        for record in json.loads(path.read_text()):
            if all(record["video_id"] != c["video_id"] and record["anser"] != c["anser"] for c in chosen):
                chosen.append(record)
        path.write_text(json.dumps(chosen[:keep]))
    return prepare_avqa_cache(layout, root / "avqa-cache")


def _classify_cache(root: Path) -> Path:
    """A folder per class, 4 classes of 3 clips: one each in train / val / test (a train split of 4 clips)."""
    from lavish.tasks.classify.synthetic import make_synthetic_classify

    data = make_synthetic_classify(root / "classify", layout="folder", num_videos=12, num_classes=4, duration_s=2.0,
                                   size=32, seed=0, progress=False)
    return _prepare("classify", data, root / "classify-cache", "--segments", "2")


@pytest.fixture(scope="module")
def cache_for(tmp_path_factory):
    """path of a row config -> (prepared cache, batch size covering its train split), made once per kind."""
    made: dict[tuple, tuple[Path, int]] = {}
    root = tmp_path_factory.mktemp("row_caches")

    def get(path: Path) -> tuple[Path, int]:
        task = task_of(path)
        key = (task, (yaml.safe_load(path.read_text()) or {}).get("subset", "s4") if task == "avs" else None)
        if key not in made:
            if task == "ave":
                made[key] = (_ave_cache(root), 1)
            elif task == "avs":
                made[key] = (_avs_cache(root, key[1]), 2)
            elif task == "classify":
                made[key] = (_classify_cache(root), 4)
            else:
                made[key] = (_avqa_cache(root), 2)
        return made[key]

    return get


def _train_losses(run: Path) -> list[float]:
    with open(run / "logs" / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.mark.parametrize("path", ROWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_row_trains_one_step_on_a_micro_backbone(path: Path, cache_for, tmp_path, capsys):
    task = task_of(path)
    cache, batch = cache_for(path)
    run = tmp_path / "run"
    code = main(["train", task, "--config", str(path), "--backbone", MICRO[task], "--no-pretrained", "--epochs", "1",
                 "--batch-size", str(batch), "--data", str(cache), "--out", str(run), "--seed", "0", "--no-progress",
                 *(["--decoder-channels", "8"] if task == "avs" else [])])
    err = capsys.readouterr().err
    assert code == 0, err
    losses = _train_losses(run)
    assert len(losses) == 1 and math.isfinite(losses[0])  # one optimiser step, finite loss
    assert (run / "best.safetensors").stat().st_size > 0
    model = json.loads((run / "run.json").read_text())["model"]
    assert model["backbone"] == MICRO[task]  # the command line won over the file's backbone
    settings = yaml.safe_load(path.read_text())
    assert model["modalities"] == settings.get("modalities", "av")
    if task == "ave":
        assert model["extra_audio_dim"] == (EXTRA_DIM if settings.get("extra_audio_features") else 0)
    for option in ("adapter", "fusion", "latents"):
        if option in settings:
            key = {"adapter": "kind", "latents": "num_latents"}.get(option, option)
            assert model["adapter"][key] == settings[option]


ROWS_WITH_COUNT = [p for p in ROWS if stated_count(p) is not None]


@pytest.mark.parametrize("path", ROWS_WITH_COUNT, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_info_on_the_real_backbone_gives_the_stated_count(path: Path, capsys):
    assert main(["info", "--task", task_of(path), "--config", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backbone"] == yaml.safe_load(path.read_text())["backbone"]
    stated = stated_count(path)
    assert abs(info["trainable_params"] / 1e6 - stated) / stated < 0.03, (info["trainable_params"], stated)
