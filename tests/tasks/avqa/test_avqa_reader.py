from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lavish.tasks.avqa import layout as avqa
from lavish.errors import DataError


@pytest.fixture(scope="module")
def test_records(reference_data):
    return avqa.read_avqa_json(reference_data / "music-avqa" / "avqa-test.json")


@pytest.fixture(scope="module")
def val_records(reference_data):
    return avqa.read_avqa_json(reference_data / "music-avqa" / "avqa-val.json")


def test_test_split_category_counts(test_records):
    assert len(test_records) == 9185
    counts = avqa.category_counts(test_records)
    assert counts == {
        "audio": 1623, "audio_counting": 1022, "audio_comparative": 601,
        "visual": 2427, "visual_counting": 1199, "visual_location": 1228,
        "audio_visual": 5135, "audio_visual_existential": 995, "audio_visual_counting": 1274,
        "audio_visual_location": 927, "audio_visual_comparative": 1115, "audio_visual_temporal": 824,
        "overall": 9185,
    }


def _rec(question, values=(), answer="yes", qid=1, kind=("Audio-Visual", "Existential")):
    return avqa.AvqaRecord("v", qid, kind[0], kind[1], question, tuple(values), answer, "f.json")


def test_tokeniser_matches_the_authors():
    assert avqa.tokenize(_rec("How many instruments are sounding?  ")) == ["How", "many", "instruments", "are", "sounding"]
    # placeholders replaced in order; a multi-word value stays one token; full-width question mark dropped
    rec = _rec("Is the <Object> on the <LR> louder than <Object>？", ["acoustic guitar", "left", "piano"])
    assert avqa.tokenize(rec) == ["Is", "the", "acoustic guitar", "on", "the", "left", "louder", "than", "piano"]
    # a separate '?' becomes an empty last token, exactly as in the authors' code
    assert avqa.tokenize(_rec("Is it ?")) == ["Is", "it", ""]


def test_tokeniser_on_real_records(test_records):
    rec = next(r for r in test_records if r.templ_values)
    words = avqa.tokenize(rec)
    assert not any("<" in w for w in words)
    assert all(v in words for v in rec.templ_values)
    assert max(len(avqa.tokenize(r)) for r in test_records) == 14


def test_vocab_from_val_as_training_file(val_records, test_records):
    qv = avqa.build_question_vocab(val_records)
    av = avqa.build_answer_vocab(val_records)
    assert qv.tokens[0] == "<pad>" and qv.tokens[-1] == "<unk>" and qv.unknown == len(qv) - 1
    first = avqa.tokenize(val_records[0])
    assert list(qv.tokens[1:1 + len(dict.fromkeys(first))]) == list(dict.fromkeys(first))
    assert av.tokens[0] == val_records[0].answer and len(av) == len({r.answer for r in val_records})
    ids = avqa.encode_question(val_records[0], qv)
    assert ids.shape == (14,) and ids.dtype == np.int64
    n = len(first)
    assert (ids[n:] == 0).all() and (ids[:n] > 0).all()
    # test questions encode without error; unseen words become <unk>
    enc = np.stack([avqa.encode_question(r, qv) for r in test_records])
    assert enc.shape == (9185, 14) and enc.max() == qv.unknown
    assert avqa.encode_question(_rec("Is the zzyzx here?"), qv)[2] == qv.unknown


def test_long_question_truncated_with_warning():
    qv = avqa.build_question_vocab([_rec(" ".join(f"w{i}" for i in range(20)) + "?")])
    with pytest.warns(UserWarning, match="truncated to 14"):
        ids = avqa.encode_question(_rec(" ".join(f"w{i}" for i in range(20)) + "?"), qv)
    assert ids.tolist() == list(range(1, 15))


def test_bad_records(tmp_path):
    with pytest.raises(DataError, match="question 3: more placeholders"):
        avqa.tokenize(_rec("Is <Object> left of <Object>?", ["piano"], qid=3))
    av = avqa.Vocab(("yes", "no"))
    with pytest.raises(DataError, match="answer 'two' is not in the answer vocabulary"):
        avqa.answer_id(_rec("How many?", answer="two"), av)
    good = {"video_id": "1", "question_id": 5, "type": '["Audio", "Counting"]', "question_content": "  ",
            "templ_values": "[]", "question_deleted": 0, "anser": "one"}
    path = tmp_path / "q.json"
    path.write_text(json.dumps([good]))
    with pytest.raises(DataError, match=r"q.json: question 5: empty question"):
        avqa.read_avqa_json(path)
    path.write_text(json.dumps([dict(good, question_content="Hi?", type='["Audio", "Location"]')]))
    with pytest.raises(DataError, match="unknown question type"):
        avqa.read_avqa_json(path)
    path.write_text('[{"video_id": "1",\n "question_id": ]')
    with pytest.raises(DataError, match=r"q.json:2: malformed json"):
        avqa.read_avqa_json(path)


def test_category_accuracy_arithmetic():
    recs = (
        [_rec("a?", kind=("Audio", "Counting"))] * 3
        + [_rec("a?", kind=("Audio", "Comparative"))] * 1
        + [_rec("a?", kind=("Visual", "Location"))] * 2
        + [_rec("a?", kind=("Audio-Visual", "Temporal"))] * 4
    )
    correct = [1, 1, 0] + [1] + [0, 0] + [1, 0, 0, 0]
    acc = avqa.category_accuracy(recs, correct)
    assert acc["audio_counting"] == pytest.approx(2 / 3)
    assert acc["audio_comparative"] == 1.0
    assert acc["audio"] == pytest.approx(3 / 4)  # micro: (2 + 1) / (3 + 1), not the mean of 2/3 and 1
    assert acc["visual"] == 0.0 and acc["visual_location"] == 0.0
    assert math.isnan(acc["visual_counting"])
    assert acc["audio_visual"] == pytest.approx(1 / 4) and acc["audio_visual_temporal"] == pytest.approx(1 / 4)
    assert acc["overall"] == pytest.approx(4 / 10)
    assert list(acc) == avqa.category_keys()


def test_category_accuracy_on_real_split(test_records):
    correct = np.array([r.minor == "Counting" for r in test_records])
    acc = avqa.category_accuracy(test_records, correct)
    assert acc["audio"] == pytest.approx(1022 / 1623)
    assert acc["audio_visual"] == pytest.approx(1274 / 5135)
    assert acc["overall"] == pytest.approx((1022 + 1199 + 1274) / 9185)
