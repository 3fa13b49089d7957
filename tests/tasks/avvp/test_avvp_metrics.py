"""AVVP metrics on clips worked by hand (the LLP benchmark's definitions, see lavish.tasks.avvp.metrics).

Every expected number below is derived in the comment beside it from the definitions: per class F = 2TP / (2TP +
FP + FN), the clip's F is the mean over the classes with anything predicted or annotated (1.0 when there are
none), events are runs of seconds matched at IoU >= 0.5, the per-second predictions are filtered by the video-level
prediction, audio-visual = heard AND seen, Event@AV adds the audio and visual counts per class.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lavish.tasks.avvp.metrics import (CLIP_KEYS, METRIC_KEYS, AvvpMetrics, clip_predictions, clip_scores,
                                       event_counts, extract_events, mean_f, segment_counts)

T, C = 10, 25


def labels(*spans: tuple[int, int, int]) -> np.ndarray:
    """(T, C) 0/1 with class c on seconds [start, end) for each (c, start, end)."""
    x = np.zeros((T, C), dtype=np.int64)
    for c, start, end in spans:
        x[start:end, c] = 1
    return x


def scores(heard, seen, audio_gt, visual_gt) -> dict[str, float]:
    return clip_scores(heard, seen, audio_gt, visual_gt)


def approx(expected: dict[str, float]) -> dict:
    return {k: pytest.approx(v, abs=1e-12) for k, v in expected.items()}


def test_extract_events_are_runs_of_seconds():
    assert extract_events([1, 1, 0, 1, 0, 0, 1, 1, 1, 1]) == [(0, 2), (3, 4), (6, 10)]
    assert extract_events([0] * 10) == []
    assert extract_events([1] * 10) == [(0, 10)]
    assert extract_events([0, 0, 0, 0, 0, 0, 0, 0, 0, 1]) == [(9, 10)]


def test_perfect_prediction_scores_100_everywhere():
    audio_gt = labels((0, 0, 5), (3, 6, 10))
    visual_gt = labels((0, 2, 8), (1, 5, 10))
    m = AvvpMetrics()
    # probabilities 0.9 where annotated, 0.1 elsewhere; the video-level prediction 0.9 for the clip's classes
    global_prob = np.full(C, 0.1)
    global_prob[[0, 1, 3]] = 0.9
    m.update((0.1 + 0.8 * audio_gt)[None], (0.1 + 0.8 * visual_gt)[None], global_prob[None], audio_gt[None],
             visual_gt[None])
    assert m.compute() == approx({k: 100.0 for k in METRIC_KEYS})


def test_empty_prediction_zero_except_the_empty_audio_visual_column():
    # audio: class 0 on [0, 5); visual: class 1 on [3, 6): no second is both heard and seen as the same class
    audio_gt, visual_gt = labels((0, 0, 5)), labels((1, 3, 6))
    nothing = np.zeros((T, C), dtype=np.int64)
    got = scores(nothing, nothing, audio_gt, visual_gt)
    # audio: class 0 active, TP 0 FN 5 -> F 0; visual likewise; AV: nothing annotated, nothing predicted -> no
    # active class -> 1.0 ("all true negatives"); Event@AV: class 0 FN 5 -> 0, class 1 FN 3 -> 0 -> mean 0.
    # Events: one missed event per modality -> F 0, AV again 1.0.
    assert got == approx({"seg_audio": 0.0, "seg_visual": 0.0, "seg_av": 1.0, "seg_event_av": 0.0,
                          "event_audio": 0.0, "event_visual": 0.0, "event_av": 1.0, "event_event_av": 0.0})
    m = AvvpMetrics()
    # the same through the accumulator: a confident per-second prediction everywhere, but the video-level
    # prediction is below 0.5 for every class, so the filter empties it
    m.update(np.full((1, T, C), 0.9), np.full((1, T, C), 0.9), np.full((1, C), 0.49), audio_gt[None],
             visual_gt[None])
    out = m.compute()
    assert out == approx({"seg_audio": 0.0, "seg_visual": 0.0, "seg_av": 100.0, "seg_type_av": 100.0 / 3,
                          "seg_event_av": 0.0, "event_audio": 0.0, "event_visual": 0.0, "event_av": 100.0,
                          "event_type_av": 100.0 / 3, "event_event_av": 0.0})


def test_empty_ground_truth_in_one_modality():
    audio_gt = labels((2, 0, 10))  # heard all clip long, never seen
    visual_gt = np.zeros((T, C), dtype=np.int64)
    heard, seen = labels((2, 0, 10)), labels((2, 4, 6))
    got = scores(heard, seen, audio_gt, visual_gt)
    # audio perfect -> 1; visual: class 2 FP 2, TP 0 -> F 0; AV: predicted [4, 6), annotated nothing -> F 0;
    # Event@AV segments: class 2 TP 10 + 0, FP 0 + 2, FN 0 -> 20 / 22.
    # Events: audio [0, 10) vs [0, 10) TP -> 1; visual [4, 6) matches nothing -> FP -> 0; AV the same -> 0;
    # Event@AV events: class 2 TP 1, FP 1 -> 2 / 3.
    assert got == approx({"seg_audio": 1.0, "seg_visual": 0.0, "seg_av": 0.0, "seg_event_av": 20 / 22,
                          "event_audio": 1.0, "event_visual": 0.0, "event_av": 0.0, "event_event_av": 2 / 3})
    # nothing seen either: the visual and AV columns have no active class -> 1.0, Event@AV = the audio column
    got = scores(heard, np.zeros((T, C)), audio_gt, visual_gt)
    assert got == approx({k: 1.0 for k in CLIP_KEYS})


def test_an_event_split_by_a_one_second_gap():
    nothing = np.zeros((T, C), dtype=np.int64)
    # annotated [0, 4); predicted seconds 0, 1, 3: events [0, 2) and [3, 4)
    got = scores(labels((0, 0, 2), (0, 3, 4)), nothing, labels((0, 0, 4)), nothing)
    # segments: TP 3, FN 1 (second 2) -> 6 / 7.
    # events: [0, 2) vs [0, 4): intersection 2 = 0.5 x union 4 -> a match (the bound is inclusive) -> TP;
    # [3, 4): intersection 1 < 0.5 x 4 -> FP; the annotated event is matched -> no FN -> 2 / (2 + 1) = 2 / 3.
    # visual and AV: nothing at all -> 1.0; Event@AV = the audio counts.
    assert got == approx({"seg_audio": 6 / 7, "seg_visual": 1.0, "seg_av": 1.0, "seg_event_av": 6 / 7,
                          "event_audio": 2 / 3, "event_visual": 1.0, "event_av": 1.0, "event_event_av": 2 / 3})
    # annotated [0, 5); predicted [0, 2) and [3, 5): each overlaps 2 of a union of 5 < 2.5 -> 2 FP and 1 FN -> 0;
    # segments: TP 4, FN 1 -> 8 / 9
    got = scores(labels((0, 0, 2), (0, 3, 5)), nothing, labels((0, 0, 5)), nothing)
    assert (got["seg_audio"], got["event_audio"]) == (pytest.approx(8 / 9), 0.0)
    assert [x[0] for x in event_counts(labels((0, 0, 2), (0, 3, 5)), labels((0, 0, 5)))] == [0, 2, 1]


def test_the_video_level_prediction_filters_the_seconds():
    audio_gt = labels((0, 0, 3), (1, 5, 8), (3, 0, 2))
    audio_prob = np.full((T, C), 0.1)
    audio_prob[0:3, 0] = 0.9
    audio_prob[5:8, 1] = 0.9
    audio_prob[:, 2] = 0.9  # heard all clip long, but class 2 is not predicted for the video
    audio_prob[0:2, 3] = 0.5  # exactly at the threshold: positive
    global_prob = np.full(C, 0.1)
    global_prob[[0, 1, 2, 3]] = 0.7, 0.4, 0.2, 0.5  # class 1 (annotated) and class 2 (not annotated) filtered
    heard, seen = clip_predictions(audio_prob, np.zeros((T, C)), global_prob)
    np.testing.assert_array_equal(heard, labels((0, 0, 3), (3, 0, 2)))
    assert not seen.any()
    got = scores(heard, seen, audio_gt, np.zeros((T, C)))
    # audio: class 0 F 1, class 1 (filtered) TP 0 FN 3 -> 0, class 2 (filtered, not annotated) inactive,
    # class 3 F 1 -> (1 + 0 + 1) / 3; events the same (class 1: one missed event)
    assert got == approx({"seg_audio": 2 / 3, "seg_visual": 1.0, "seg_av": 1.0, "seg_event_av": 2 / 3,
                          "event_audio": 2 / 3, "event_visual": 1.0, "event_av": 1.0, "event_event_av": 2 / 3})
    # without the filter class 1 would be right (F 1) and class 2 ten false positive seconds (F 0): 3 / 4
    assert mean_f(*segment_counts(audio_prob >= 0.5, audio_gt)) == pytest.approx(3 / 4)


def test_audio_visual_is_the_intersection_of_heard_and_seen():
    audio_gt, visual_gt = labels((0, 0, 6)), labels((0, 3, 10))  # both on [3, 6)
    heard, seen = labels((0, 0, 6)), labels((0, 4, 10))  # both predicted on [4, 6)
    got = scores(heard, seen, audio_gt, visual_gt)
    # AV segments: TP 2 (4, 5), FN 1 (3) -> 4 / 5; AV events: [4, 6) vs [3, 6): 2 >= 0.5 x 3 -> TP, no FN -> 1.
    # visual segments: TP 6, FN 1 -> 12 / 13; visual events: [4, 10) vs [3, 10): 6 >= 3.5 -> 1.
    # Event@AV segments: class 0 TP 6 + 6, FN 0 + 1 -> 24 / 25; events: TP 1 + 1 -> 1.
    assert got == approx({"seg_audio": 1.0, "seg_visual": 12 / 13, "seg_av": 4 / 5, "seg_event_av": 24 / 25,
                          "event_audio": 1.0, "event_visual": 1.0, "event_av": 1.0, "event_event_av": 1.0})


def test_a_clip_averages_its_classes_not_its_seconds():
    nothing = np.zeros((T, C), dtype=np.int64)
    # class 0: 10 seconds right (F 1); class 1: its one second missed (F 0): mean 0.5, where one count over
    # classes x seconds would give 20 / 21
    got = scores(labels((0, 0, 10)), nothing, labels((0, 0, 10), (1, 4, 5)), nothing)
    assert got["seg_audio"] == pytest.approx(0.5) and got["event_audio"] == pytest.approx(0.5)


def test_clips_weigh_the_same_and_type_av_averages_the_three_columns():
    # clip 0 perfect (every column 1); clip 1 the empty prediction of an audio-only and a visual-only event
    # (0, 0, 1 for AV, 0 for Event@AV): means 50, 50, 100, Event@AV 50; Type@AV (50 + 50 + 100) / 3
    audio_gt = np.stack([labels((0, 0, 4)), labels((0, 0, 5))])
    visual_gt = np.stack([labels((0, 0, 4)), labels((1, 3, 6))])
    audio_prob = np.stack([0.9 * labels((0, 0, 4)), np.zeros((T, C))])
    visual_prob = np.stack([0.9 * labels((0, 0, 4)), np.zeros((T, C))])
    global_prob = np.zeros((2, C))
    global_prob[0, 0] = 0.8
    m = AvvpMetrics()
    m.update(torch.tensor(audio_prob, dtype=torch.bfloat16), torch.tensor(visual_prob), torch.tensor(global_prob),
             torch.tensor(audio_gt), torch.tensor(visual_gt))  # torch tensors of any dtype are accepted
    assert m.num_clips == 2
    assert m.compute() == approx({"seg_audio": 50.0, "seg_visual": 50.0, "seg_av": 100.0, "seg_type_av": 200 / 3,
                                  "seg_event_av": 50.0, "event_audio": 50.0, "event_visual": 50.0,
                                  "event_av": 100.0, "event_type_av": 200 / 3, "event_event_av": 50.0})
    np.testing.assert_allclose(m.per_clip, [[1.0] * 8, [0, 0, 1, 0, 0, 0, 1, 0]])
    m.reset()
    assert m.num_clips == 0 and all(math.isnan(v) for v in m.compute().values())


def test_event_at_av_adds_the_audio_and_visual_counts_per_class():
    # class 0 heard on [0, 2) and predicted so (TP 1); class 0 seen on [5, 10), nothing seen predicted (FN 1);
    # class 1 seen predicted on [0, 10), not annotated (FP 1).
    # Event@AV events: class 0 TP 1, FN 1 -> 2 / 3; class 1 FP 1 -> 0; mean 1 / 3 (not the mean of audio 1 and
    # visual 0 = 0.5). Segments: class 0 TP 2, FN 5 -> 4 / 9; class 1 FP 10 -> 0; mean 2 / 9.
    got = scores(labels((0, 0, 2)), labels((1, 0, 10)), labels((0, 0, 2)), labels((0, 5, 10)))
    assert got["event_event_av"] == pytest.approx(1 / 3) and got["seg_event_av"] == pytest.approx(2 / 9)
    assert got["event_audio"] == 1.0 and got["event_visual"] == 0.0


def test_update_refuses_mismatched_shapes():
    m = AvvpMetrics()
    with pytest.raises(ValueError, match="expected"):
        m.update(np.zeros((1, T, C)), np.zeros((1, T, C)), np.zeros((1, C - 1)), np.zeros((1, T, C)),
                 np.zeros((1, T, C)))
