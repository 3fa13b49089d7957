"""Evaluation results against values counted by hand on fixed predictions (spec 3.1 AVE accuracy, 3.2 AVS mIoU /
F-score, 3.3 AVQA accuracy per question type): the tasks' Evaluation accumulators, and ``lavish eval ave --json``
end to end on an adapter file whose head predicts one known class."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.data import DataLoader

from ave_layout import write_mp4
from lavish.cli.main import main
from lavish.tasks.avqa.model import AvqaOutput
from lavish.tasks.ave.metrics import AveEvaluation
from lavish.tasks.avs.metrics import AvsEvaluation

MICRO = "lavish_vit_micro_patch8_64"


# ===================================================================================================== AVE
def _logits(preds: list[list[int]], k: int = 4) -> torch.Tensor:
    """(B, T, K) logits whose argmax is ``preds`` (3 on the predicted class, random below 1 elsewhere)."""
    p = torch.tensor(preds)
    return torch.rand(*p.shape, k) + 3 * torch.nn.functional.one_hot(p, k)


def test_ave_evaluation_counts():
    torch.manual_seed(0)
    classes = ["Bark", "Cat", "Dog", "background"]  # Dog never occurs in the labels
    ev = AveEvaluation(classes, "test", None)
    # (true -> predicted) per segment:
    # batch 1, video 0: 0->0, 0->1, 1->1, 3->3 ; video 1: 3->3, 3->0, 1->1, 1->3
    # batch 2, video 0: 1->1, 1->1, 3->3, 3->2
    ev.update(_logits([[0, 1, 1, 3], [3, 0, 1, 3]]), {"labels": torch.tensor([[0, 0, 1, 3], [3, 3, 1, 1]])})
    ev.update(_logits([[1, 1, 3, 2]]), {"labels": torch.tensor([[1, 1, 3, 3]])})
    result = ev.result()
    # rows = true class, columns = predicted class
    assert result["confusion"] == [[1, 1, 0, 0],   # Bark: 2 segments, 1 right
                                   [0, 4, 0, 1],   # Cat: 5 segments, 4 right
                                   [0, 0, 0, 0],   # Dog: none
                                   [1, 0, 1, 3]]   # background: 5 segments, 3 right
    assert result["segments"] == 12 and result["split"] == "test" and result["classes"] == classes
    assert result["accuracy"] == pytest.approx(8 / 12)
    assert result["per_class"] == {"Bark": pytest.approx(1 / 2), "Cat": pytest.approx(4 / 5), "Dog": None,
                                   "background": pytest.approx(3 / 5)}


@pytest.fixture(scope="module")
def constant_ave_models(ave_cache, tmp_path_factory):
    """Adapter files (micro backbone, untrained adapters) whose head predicts one class for every segment:
    weights of the last layer 0, bias 1 on that class. {class index: path}."""
    from lavish.tasks.ave.model import AveModelConfig
    from lavish.models.weights import save_adapter
    from lavish.engine.registry import get_task

    task = get_task("ave")
    dm = task.data_module(ave_cache, backbone=MICRO, batch_size=2)
    config, task_meta = task.fit_model_config(AveModelConfig(backbone=MICRO), dm)
    model = task.build_model(config)
    meta = {"task": "ave", **task_meta, "pretrained": False, "backbone_weights": None,
            "frontend": dm.manifest["frontend"]["name"], "frame_size": dm.manifest["frame_size"],
            "num_segments": dm.manifest["num_segments"]}
    assert meta["classes"] == ["Bark", "Cat", "background"]
    out = tmp_path_factory.mktemp("constant_ave")
    files = {}
    for k in (1, 2):
        with torch.no_grad():
            model.head.mlp_class_2.weight.zero_()
            model.head.mlp_class_2.bias.copy_(torch.nn.functional.one_hot(torch.tensor(k), 3).float())
        files[k] = save_adapter(model, out / f"class{k}.safetensors", config.to_dict(), meta)
    return files


# tests/tasks/ave/ave_layout.py: val = "Cat vid_d 0-4" (seconds 0-3 Cat, 4-9 background),
#                           test = "Cat vid_e 1-10" (second 0 background, 1-9 Cat)
@pytest.mark.parametrize("split, predicted, accuracy, per_class, confusion", [
    ("test", 1, 9 / 10, {"Bark": None, "Cat": 1.0, "background": 0.0}, [[0, 0, 0], [0, 9, 0], [0, 1, 0]]),
    ("val", 2, 6 / 10, {"Bark": None, "Cat": 0.0, "background": 1.0}, [[0, 0, 0], [0, 0, 4], [0, 0, 6]]),
])
def test_eval_ave_json_of_a_constant_model(constant_ave_models, ave_cache, capsys, split, predicted, accuracy,
                                           per_class, confusion):
    capsys.readouterr()
    assert main(["eval", "ave", "--checkpoint", str(constant_ave_models[predicted]), "--data", str(ave_cache),
                 "--split", split, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == split and result["segments"] == 10
    assert result["accuracy"] == pytest.approx(accuracy)
    assert result["per_class"] == per_class and result["confusion"] == confusion


# ===================================================================================================== AVS
def test_avs_evaluation_worked_by_hand():
    """Two clips of 2 frames, 2x3 masks; logits +-10 (sigmoid 0.99995 / 0.00005)."""
    hi, lo = 10.0, -10.0
    ev = AvsEvaluation("test", "s4", videos=2)
    # clip A, both frames annotated
    #   frame 0: gt [[1 1 0] [0 0 0]], pred [[1 0 0] [1 0 0]]: inter 1, union 3 -> IoU 1/3
    #            F: threshold 0 takes all 6 pixels: P = 2/6, R = 1 -> F = 1.3 (1/3) / (0.3/3 + 1) = 13/33;
    #               thresholds 1/254 .. 253/254 take the 2 predicted pixels: P = R = 1/2 -> F = 1.3/4 / 0.65 = 1/2;
    #               the last (1.0 in float32) takes none -> F = 0. Max 1/2.
    #   frame 1: gt empty, pred 1 pixel: IoU = pixels both empty / all = 5/6; no F (empty gt frames are skipped)
    #   clip: mIoU (1/3 + 5/6) / 2 = 7/12, F 1/2
    ev.update(torch.tensor([[[[hi, lo, lo], [hi, lo, lo]], [[lo, lo, hi], [lo, lo, lo]]]]),
              {"masks": torch.tensor([[[[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]]),
               "annotated": torch.tensor([[True, True]])})
    # clip B, only frame 0 annotated
    #   frame 0: gt [[1 1 1] [1 0 0]], pred everything: IoU 4/6 = 2/3; every threshold but the last takes the 6
    #            pixels: P = 4/6, R = 1 -> F = 1.3 (2/3) / (0.2 + 1) = 13/18
    #   frame 1 (not annotated: must not count; it would score IoU 0 and F 0)
    ev.update(torch.tensor([[[[hi, hi, hi], [hi, hi, hi]], [[lo, lo, lo], [lo, lo, lo]]]]),
              {"masks": torch.tensor([[[[1, 1, 1], [1, 0, 0]], [[1, 1, 1], [1, 1, 1]]]]),
               "annotated": torch.tensor([[True, False]])})
    result = ev.result()
    assert result["frames"] == 3 and result["videos"] == 2 and result["subset"] == "s4"
    assert result["miou"] == pytest.approx((7 / 12 + 2 / 3) / 2, abs=1e-6)  # 5/8 (up to the 1e-7 of the IoU)
    assert result["fscore"] == pytest.approx((1 / 2 + 13 / 18) / 2, abs=1e-6)  # 11/18


# ==================================================================================================== AVQA
def _record(qid: int, video: str, major: str, minor: str, question: str, answer: str) -> dict:
    """One record in the official format (``type`` a string holding a list, the answer field ``anser``)."""
    return {"video_id": video, "question_id": qid, "type": json.dumps([major, minor]), "question_content": question,
            "templ_values": "[]", "anser": answer}


SOUNDING = "How many instruments are sounding?"
WHERE = "Where is the piano?"
FIRST = "Which sounds first?"
# training answers (vocabulary in order of first appearance): two = 0, one = 1, left = 2;
# answer prior (most frequent training answer per type): Audio Counting "two", Visual Location "left",
# Audio-Visual Temporal "left"
TRAIN = [_record(0, "v1", "Audio", "Counting", SOUNDING, "two"), _record(1, "v1", "Audio", "Counting", SOUNDING, "one"),
         _record(2, "v1", "Audio", "Counting", SOUNDING, "two"), _record(3, "v1", "Visual", "Location", WHERE, "left"),
         _record(4, "v1", "Audio-Visual", "Temporal", FIRST, "left")]
# test questions, the model's answer (fixed logits), right?, the prior's answer, right?
#   10 A/Counting     "two"  model two  yes  prior two  yes
#   11 A/Counting     "one"  model two  no   prior two  no
#   12 A/Comparative  "yes"  model left no   prior -    no   ("yes" never a training answer: unanswerable)
#   13 V/Location     "left" model one  no   prior left yes
#   14 AV/Temporal    "left" model left yes  prior left yes
#   15 AV/Existential on video v3, which does not exist: left out
TEST = [_record(10, "v2", "Audio", "Counting", SOUNDING, "two"),
        _record(11, "v2", "Audio", "Counting", SOUNDING, "one"),
        _record(12, "v2", "Audio", "Comparative", "Is the piano louder than the guitar?", "yes"),
        _record(13, "v2", "Visual", "Location", WHERE, "left"),
        _record(14, "v2", "Audio-Visual", "Temporal", FIRST, "left"),
        _record(15, "v3", "Audio-Visual", "Existential", "Is every sound from an instrument in the video?", "yes")]
PREDICTED = [0, 0, 2, 1, 2]  # answer ids of the model's answers to questions 10..14
NAN = math.nan
EXPECTED = {  # key: (model accuracy, prior accuracy, questions)
    "audio": (1 / 3, 1 / 3, 3), "audio_counting": (1 / 2, 1 / 2, 2), "audio_comparative": (0.0, 0.0, 1),
    "visual": (0.0, 1.0, 1), "visual_counting": (NAN, NAN, 0), "visual_location": (0.0, 1.0, 1),
    "audio_visual": (1.0, 1.0, 1), "audio_visual_existential": (NAN, NAN, 0), "audio_visual_counting": (NAN, NAN, 0),
    "audio_visual_location": (NAN, NAN, 0), "audio_visual_comparative": (NAN, NAN, 0),
    "audio_visual_temporal": (1.0, 1.0, 1), "overall": (2 / 5, 3 / 5, 5),
}


@pytest.fixture(scope="module")
def avqa_cache(tmp_path_factory):
    """A MUSIC-AVQA layout of two real 3-s videos and the questions above, prepared for the micro backbone."""
    root = tmp_path_factory.mktemp("avqa_by_hand")
    data = root / "data"
    (data / "videos").mkdir(parents=True)
    for seed, vid in enumerate(("v1", "v2")):
        write_mp4(data / "videos" / f"{vid}.mp4", seed, seconds=3.0, size=32)
    for split, records in (("train", TRAIN), ("val", TRAIN[:1]), ("test", TEST)):
        (data / f"avqa-{split}.json").write_text(json.dumps(records))
    main(["prepare", "avqa", "--root", str(data), "--out", str(root / "cache"), "--backbone", MICRO, "--no-progress"])
    assert (root / "cache" / "manifest.json").is_file()
    return root / "cache"


def test_avqa_evaluation_per_type_by_hand(avqa_cache):
    from lavish.tasks.avqa.dataset import AvqaDataModule, collate
    from lavish.engine.registry import get_task

    dm = AvqaDataModule(avqa_cache, backbone=MICRO)
    assert dm.vocab.answer.tokens == ("two", "one", "left")
    ev = get_task("avqa").evaluation(None, {}, dm, "test")
    ds = dm.dataset("test")
    assert [r.question_id for r in ds.records] == [10, 11, 12, 13, 14]
    for batch in DataLoader(ds, batch_size=2, collate_fn=collate):  # the real batches, in dataset order
        logits = torch.nn.functional.one_hot(torch.tensor([PREDICTED[i] for i in batch["index"]]), 3).float()
        n = len(batch["index"])
        ev.update(AvqaOutput(logits, torch.zeros(n * 10, 2), None, torch.zeros(n, 10, 64), torch.zeros(n, 10),
                             torch.zeros(n, 10)), batch)
    result = ev.result()
    assert result["split"] == "test" and result["questions"] == 5
    assert result["unanswerable"] == 1 and result["left_out"] == 1
    for key, (model, prior, count) in EXPECTED.items():
        assert result["counts"][key] == count, key
        for got, want in ((result[key], model), (result["prior"][key], prior)):
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want), key
