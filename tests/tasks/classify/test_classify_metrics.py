"""Classify metrics against independent references: scikit-learn (the AudioSet evaluation code's own calls, and a
literal copy of AST's ``calculate_stats``), values worked by hand (arithmetic in the comments), the normal
distribution's closed form for d-prime, and the torchmetrics validation states fed in batches and merged as DDP's
sync merges them. The rules tested (ties, classes without positives / negatives) are lavish.tasks.classify.metrics'.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats
from sklearn import metrics as skm

from lavish.tasks.classify.metrics import (ClassifyEvaluation, d_prime, format_lines, multilabel_stats,
                                           single_label_metrics, update_validation, validation_metrics)


def names(k: int) -> list[str]:
    return [f"class{i:02d}" for i in range(k)]


def random_multilabel(seed: int, n: int, k: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) scores and 0/1 targets where every class has positives and negatives; ``tied``: scores on a grid of
    five values, so most scores tie."""
    rng = np.random.default_rng(seed)
    while True:
        targets = (rng.random((n, k)) < rng.uniform(0.1, 0.6, k)).astype(np.int64)
        if (targets.sum(0) > 0).all() and (targets.sum(0) < n).all():
            break
    scores = rng.integers(0, 5, (n, k)) / 4.0 if tied else rng.normal(size=(n, k)) + 1.5 * targets
    return scores, targets


# ------------------------------------------------------------------------------------------ multi-label by hand
def test_ap_and_auc_worked_by_hand():
    # class a: scores [0.9, 0.8, 0.7, 0.6], targets [1, 0, 1, 0]; thresholds 0.9 (TP 1, FP 0: precision 1, recall
    # 1/2), 0.8 (no new positive), 0.7 (TP 2, FP 1: precision 2/3, recall 1): AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # AUC: positive/negative pairs ranked right: (0.9, 0.8), (0.9, 0.6), (0.7, 0.6); wrong: (0.7, 0.8): 3/4.
    # class b, ties: scores [0.5, 0.5, 0.5, 0.1], targets [1, 0, 1, 0]; ONE threshold at 0.5 (TP 2, FP 1:
    # precision 2/3, recall 1): AP = 2/3 (ranking the tie positive-first would give 1, negative-first
    # (1/2 + 2/3) / 2 = 7/12). AUC: each positive ties the negative at 0.5 (1/2) and beats the one at 0.1 (1):
    # (1/2 + 1 + 1/2 + 1) / 4 = 3/4.
    # class c: no positive, class d: no negative: unscored (None), out of the means.
    scores = np.array([[0.9, 0.5, 0.3, 0.2], [0.8, 0.5, 0.1, 0.4], [0.7, 0.5, 0.2, 0.1], [0.6, 0.1, 0.4, 0.3]])
    targets = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 1, 0, 1], [0, 0, 0, 1]])
    r = multilabel_stats(scores, targets, ["a", "b", "c", "d"])
    assert r["per_class"]["a"] == {"ap": pytest.approx(5 / 6, abs=1e-15), "auc": 0.75, "positives": 2}
    assert r["per_class"]["b"] == {"ap": pytest.approx(2 / 3, abs=1e-15), "auc": 0.75, "positives": 2}
    assert r["per_class"]["c"] == {"ap": None, "auc": None, "positives": 0}
    assert r["per_class"]["d"] == {"ap": None, "auc": None, "positives": 4}
    # mAP = (5/6 + 2/3) / 2 = 3/4; mAUC = (3/4 + 3/4) / 2 = 3/4; d' = sqrt(2) * Phi^-1(3/4) = sqrt(2) * 0.67449
    assert r["mAP"] == pytest.approx(0.75, abs=1e-15) and r["mAUC"] == 0.75
    assert r["d_prime"] == pytest.approx(math.sqrt(2) * 0.6744897501960817, abs=1e-12)
    assert (r["clips"], r["classes_scored"], r["classes_without_positives"], r["classes_without_negatives"]) \
        == (4, 2, 1, 1)
    # the same two scored classes through scikit-learn
    for k in (0, 1):
        assert r["per_class"]["ab"[k]]["ap"] == pytest.approx(skm.average_precision_score(targets[:, k],
                                                                                          scores[:, k]), abs=1e-15)
        assert r["per_class"]["ab"[k]]["auc"] == pytest.approx(skm.roc_auc_score(targets[:, k], scores[:, k]))


def test_perfect_and_reversed_ranking():
    # every positive above every negative: AP 1, AUC 1, d' undefined (the reference: +inf); reversed: AUC 0 and
    # AP = mean over the positives (ranked last, 2 of 4 at ranks 3, 4) of precision 1/3, 2/4 = (1/3 + 1/2) / 2
    targets = np.array([[1], [1], [0], [0]])
    perfect = multilabel_stats(np.array([[4.0], [3.0], [2.0], [1.0]]), targets, ["a"])
    assert (perfect["mAP"], perfect["mAUC"], perfect["d_prime"]) == (1.0, 1.0, None)
    reverse = multilabel_stats(np.array([[1.0], [2.0], [3.0], [4.0]]), targets, ["a"])
    assert reverse["mAP"] == pytest.approx((1 / 3 + 1 / 2) / 2, abs=1e-15)
    assert (reverse["mAUC"], reverse["d_prime"]) == (0.0, None)


def test_d_prime_closed_form():
    # Phi(d' / sqrt(2)) = AUC, Phi(x) = (1 + erf(x / sqrt(2))) / 2  =>  AUC = (1 + erf(d' / 2)) / 2
    for auc in (0.5, 0.6, 0.75, 0.9, 0.99, 0.3):
        assert (1 + math.erf(d_prime(auc) / 2)) / 2 == pytest.approx(auc, abs=1e-12)
        assert d_prime(auc) == pytest.approx(math.sqrt(2) * scipy_stats.norm().ppf(auc), abs=1e-12)
    assert d_prime(0.5) == 0.0
    assert d_prime(None) is None and d_prime(0.0) is None and d_prime(1.0) is None


# ------------------------------------------------------------------------------------ multi-label vs scikit-learn
@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("seed,n,k", [(0, 7, 1), (1, 40, 3), (2, 300, 17), (3, 1000, 5)])
def test_per_class_ap_auc_equal_sklearn(seed, n, k, tied):
    scores, targets = random_multilabel(seed, n, k, tied)
    if tied:
        assert len(np.unique(scores)) <= 5
    r = multilabel_stats(scores, targets, names(k))
    ap = [skm.average_precision_score(targets[:, c], scores[:, c]) for c in range(k)]
    auc = [skm.roc_auc_score(targets[:, c], scores[:, c]) for c in range(k)]
    assert [r["per_class"][c]["ap"] for c in names(k)] == pytest.approx(ap, abs=1e-12)
    assert [r["per_class"][c]["auc"] for c in names(k)] == pytest.approx(auc, abs=1e-12)
    assert [r["per_class"][c]["positives"] for c in names(k)] == targets.sum(0).tolist()
    assert r["mAP"] == pytest.approx(np.mean(ap), abs=1e-12) and r["mAUC"] == pytest.approx(np.mean(auc), abs=1e-12)
    assert r["classes_scored"] == k and r["clips"] == n


def ast_calculate_stats(output: np.ndarray, target: np.ndarray) -> list[dict]:
    """AST's src/utilities/stats.py calculate_stats (github:YuanGongND/ast), its class-wise statistics."""
    classes_num = target.shape[-1]
    stats = []
    for k in range(classes_num):
        avg_precision = skm.average_precision_score(target[:, k], output[:, k], average=None)
        auc = skm.roc_auc_score(target[:, k], output[:, k], average=None)
        stats.append({"AP": avg_precision, "auc": auc})
    return stats


def test_equals_ast_calculate_stats_and_traintest():
    # AST's traintest.py: mAP = np.mean([stat['AP'] ...]), mAUC likewise, d_prime(mAUC) = norm.ppf(mAUC) * sqrt(2);
    # on sigmoid probabilities (what AST feeds it) of float32 logits
    scores, targets = random_multilabel(7, 500, 27, tied=False)
    probs = torch.sigmoid(torch.tensor(scores, dtype=torch.float32)).numpy()
    stats = ast_calculate_stats(probs, targets)
    m_ap, m_auc = np.mean([s["AP"] for s in stats]), np.mean([s["auc"] for s in stats])
    r = multilabel_stats(torch.from_numpy(probs), torch.from_numpy(targets), names(27))
    assert r["mAP"] == pytest.approx(m_ap, abs=1e-12) and r["mAUC"] == pytest.approx(m_auc, abs=1e-12)
    assert r["d_prime"] == pytest.approx(scipy_stats.norm().ppf(m_auc) * np.sqrt(2.0), abs=1e-10)


def test_logits_and_probabilities_give_the_same_numbers():
    # only the order of the scores matters; sigmoid is strictly increasing (no saturation for |x| < 6 in float64)
    scores, targets = random_multilabel(4, 200, 6, tied=False)
    assert np.abs(scores).max() < 6
    a = multilabel_stats(scores, targets, names(6))
    b = multilabel_stats(1 / (1 + np.exp(-scores)), targets, names(6))
    assert a == b


def test_classes_without_positives_or_negatives_left_out():
    scores, targets = random_multilabel(5, 60, 8, tied=True)
    targets[:, 2] = 0  # no positive
    targets[:, 5] = 0
    targets[:, 6] = 1  # no negative
    r = multilabel_stats(scores, targets, names(8))
    kept = [0, 1, 3, 4, 7]
    ap = [skm.average_precision_score(targets[:, c], scores[:, c]) for c in kept]
    auc = [skm.roc_auc_score(targets[:, c], scores[:, c]) for c in kept]
    assert r["mAP"] == pytest.approx(np.mean(ap), abs=1e-12) and r["mAUC"] == pytest.approx(np.mean(auc), abs=1e-12)
    assert (r["classes_scored"], r["classes_without_positives"], r["classes_without_negatives"]) == (5, 2, 1)
    for c in (2, 5, 6):
        assert r["per_class"][names(8)[c]]["ap"] is None and r["per_class"][names(8)[c]]["auc"] is None
    assert r["per_class"][names(8)[6]]["positives"] == 60


def test_nothing_scored():
    r = multilabel_stats(np.zeros((3, 2)), np.zeros((3, 2), dtype=np.int64), ["a", "b"])
    assert (r["mAP"], r["mAUC"], r["d_prime"], r["classes_scored"], r["classes_without_positives"]) \
        == (None, None, None, 0, 2)
    r = multilabel_stats(np.zeros((0, 2)), np.zeros((0, 2), dtype=np.int64), ["a", "b"])
    assert (r["clips"], r["mAP"], r["classes_without_positives"], r["classes_without_negatives"]) == (0, None, 2, 2)


def test_bad_shapes_and_targets_refused():
    with pytest.raises(ValueError, match="expected scores"):
        multilabel_stats(np.zeros((3, 2)), np.zeros((3, 3), dtype=np.int64), ["a", "b"])
    with pytest.raises(ValueError, match="expected scores"):
        multilabel_stats(np.zeros((3, 2)), np.zeros((3, 2), dtype=np.int64), ["a", "b", "c"])
    with pytest.raises(ValueError, match="0 or 1"):
        multilabel_stats(np.zeros((3, 2)), np.full((3, 2), 2), ["a", "b"])
    with pytest.raises(ValueError, match="expected scores"):
        single_label_metrics(np.zeros((3, 2)), np.zeros((3, 2), dtype=np.int64), ["a", "b"])
    with pytest.raises(ValueError, match="class indices"):
        single_label_metrics(np.zeros((3, 2)), np.array([0, 1, 2]), ["a", "b"])


# ------------------------------------------------------------------------------------------------- single-label
@pytest.mark.filterwarnings("ignore:'k' .* greater than or equal to 'n_classes'")  # K = 3: top-3 of 3 is 1
@pytest.mark.parametrize("seed,n,k", [(0, 50, 3), (1, 200, 7), (2, 500, 12), (3, 9, 40)])
def test_top_k_equals_sklearn_without_ties(seed, n, k):
    rng = np.random.default_rng(seed)
    scores, labels = rng.normal(size=(n, k)), rng.integers(0, k, n)
    r = single_label_metrics(torch.tensor(scores, dtype=torch.float32), torch.tensor(labels), names(k))
    kk = min(5, k)
    assert r["top1"] == pytest.approx(skm.top_k_accuracy_score(labels, scores, k=1, labels=range(k)), abs=1e-15)
    assert r["top5"] == pytest.approx(skm.top_k_accuracy_score(labels, scores, k=kk, labels=range(k)), abs=1e-15)
    assert r["clips"] == n


def test_top_k_ties_by_hand():
    # K = 6; rule: a class ranks above the true class when its score is higher, or equal with a lower index
    scores = np.array([[0, 0, 0, 0, 0, 0],  # label 0: nothing above -> rank 0: top-1 yes, top-5 yes
                       [0, 0, 0, 0, 0, 0],  # label 5: classes 0-4 above -> rank 5: top-1 no, top-5 no
                       [0, 0, 0, 0, 0, 0],  # label 4: classes 0-3 above -> rank 4: top-1 no, top-5 yes
                       [.1, .9, .9, 0, 0, 0],  # label 2: class 1 (tie, lower index) above -> rank 1: no, yes
                       [.1, .9, .9, 0, 0, 0]], dtype=np.float64)  # label 1: rank 0: yes, yes
    labels = np.array([0, 5, 4, 2, 1])
    r = single_label_metrics(scores, labels, names(6))
    assert (r["top1"], r["top5"]) == (pytest.approx(2 / 5), pytest.approx(4 / 5))
    # per class (one clip each): class00 1, class01 1, class02 0, class04 0, class05 0; class03 has no clip
    assert r["per_class"] == {"class00": 1.0, "class01": 1.0, "class02": 0.0, "class03": None, "class04": 0.0,
                              "class05": 0.0}
    assert r["mean_class_accuracy"] == pytest.approx(2 / 5)  # (1 + 1 + 0 + 0 + 0) / 5 classes with clips
    # the top-1 class is argmax's (first maximum)
    assert r["top1"] == np.mean(scores.argmax(1) == labels)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # class 4: predicted, no clip
@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "ties"])
def test_per_class_accuracy_is_the_confusion_matrix(tied):
    rng = np.random.default_rng(11)
    k, n = 9, 400
    labels = rng.choice([c for c in range(k) if c != 4], n)  # class 4 without clips
    scores = rng.integers(0, 3, (n, k)) / 2 if tied else rng.normal(size=(n, k))
    scores[np.arange(n), labels] += rng.random(n) < 0.5
    cm = skm.confusion_matrix(labels, scores.argmax(1), labels=range(k))
    r = single_label_metrics(scores, labels, names(k))
    for c in range(k):
        expected = cm[c, c] / cm[c].sum() if cm[c].sum() else None
        assert r["per_class"][names(k)[c]] == (pytest.approx(expected, abs=1e-15) if expected is not None else None)
    rows = cm.sum(1) > 0
    assert r["mean_class_accuracy"] == pytest.approx(np.mean(np.diag(cm)[rows] / cm.sum(1)[rows]), abs=1e-15)
    assert r["mean_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, scores.argmax(1)), abs=1e-12)
    assert r["top1"] == pytest.approx(np.trace(cm) / n, abs=1e-15)


def test_no_clip():
    r = single_label_metrics(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), ["a", "b", "c"])
    assert r == {"clips": 0, "top1": None, "top5": None, "mean_class_accuracy": None,
                 "per_class": {"a": None, "b": None, "c": None}}


# ------------------------------------------------------------------------------ validation metrics (torchmetrics)
def batches(n: int, seed: int) -> list[slice]:
    """Unequal consecutive batches covering range(n)."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n), 6, replace=False))
    return [slice(a, b) for a, b in zip([0, *cuts], [*cuts, n])]


def fed(metrics: dict, logits: torch.Tensor, labels: torch.Tensor, multi_label: bool, parts: list[slice]) -> dict:
    for part in parts:
        update_validation(metrics, logits[part], labels[part], multi_label)
    return metrics


def test_multilabel_validation_metrics_exact_over_batches_and_processes():
    scores, targets = random_multilabel(8, 203, 11, tied=True)
    targets[:, 3] = 0  # a class without positives: left out, as in multilabel_stats
    logits, labels = torch.tensor(scores - 0.2, dtype=torch.float32), torch.tensor(targets)
    parts = batches(203, 0)
    logits[parts[0]] = logits[parts[0]].clamp(0, 1)  # one batch entirely in [0, 1]: still ranked as logits
    expected = multilabel_stats(logits, labels, names(11))
    one = fed(validation_metrics(True, 11), logits, labels, True, parts)
    assert set(one) == {"mAP", "mAUC"}
    assert one["mAP"].compute().item() == pytest.approx(expected["mAP"], rel=1e-7)  # float32 tensor of the float64
    assert one["mAUC"].compute().item() == pytest.approx(expected["mAUC"], rel=1e-7)
    # DDP: rank r evaluates items r, r + 3, ... (ShardSampler); the sync concatenates the states
    ranks = [fed(validation_metrics(True, 11), logits[r::3], labels[r::3], True, batches(len(labels[r::3]), r))
             for r in range(3)]
    for key in ("mAP", "mAUC"):
        for other in ranks[1:]:
            ranks[0][key].merge_state(other[key])
        assert ranks[0][key].compute().item() == one[key].compute().item()
    with pytest.warns(UserWarning, match="before the ``update``"):  # an epoch without a batch: NaN
        assert math.isnan(validation_metrics(True, 11)["mAP"].compute().item())


@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "ties"])
def test_single_label_validation_metrics_exact_over_batches_and_processes(tied):
    rng = np.random.default_rng(9)
    n, k = 157, 8
    labels = torch.tensor(rng.integers(0, k, n))
    logits = torch.tensor(rng.integers(0, 3, (n, k)) if tied else rng.normal(size=(n, k)), dtype=torch.float32)
    expected = single_label_metrics(logits, labels, names(k))
    one = fed(validation_metrics(False, k), logits, labels, False, batches(n, 1))
    assert set(one) == {"top1", "top5"}
    assert one["top1"].compute().item() == pytest.approx(expected["top1"], abs=1e-7)
    assert one["top5"].compute().item() == pytest.approx(expected["top5"], abs=1e-7)
    ranks = [fed(validation_metrics(False, k), logits[r::2], labels[r::2], False, batches(len(labels[r::2]), r))
             for r in range(2)]
    for key in ("top1", "top5"):
        ranks[0][key].merge_state(ranks[1][key])
        assert ranks[0][key].compute().item() == one[key].compute().item()


def test_single_label_validation_follows_the_tie_rule():
    # the hand-worked ties above: top-1 2/5, top-5 4/5 (torch.topk alone does not promise an order for ties)
    scores = torch.tensor([[0, 0, 0, 0, 0, 0]] * 3 + [[.1, .9, .9, 0, 0, 0]] * 2)
    metrics = fed(validation_metrics(False, 6), scores, torch.tensor([0, 5, 4, 2, 1]), False, [slice(0, 5)])
    assert metrics["top1"].compute().item() == pytest.approx(2 / 5)
    assert metrics["top5"].compute().item() == pytest.approx(4 / 5)
    assert validation_metrics(False, 3)["top5"].top_k == 3
    with pytest.raises(ValueError, match="at least 2 classes"):
        validation_metrics(False, 1)


# ------------------------------------------------------------------------------------------------- evaluation
def test_evaluation_single_label_end_to_end():
    rng = np.random.default_rng(12)
    n, k = 90, 7
    logits, labels = torch.tensor(rng.normal(size=(n, k)), dtype=torch.float32), torch.tensor(rng.integers(0, k, n))
    evaluation = ClassifyEvaluation(names(k), multi_label=False, split="test")
    for part in batches(n, 2):
        evaluation.update(logits[part], {"labels": labels[part]})
    result = evaluation.result()
    confusion = result.pop("confusion")
    assert result == {"split": "test", "multi_label": False, "classes": names(k),
                      **single_label_metrics(logits, labels, names(k))}
    assert result["top1"] == pytest.approx(skm.top_k_accuracy_score(labels, logits, k=1, labels=range(k)))
    np.testing.assert_array_equal(confusion, skm.confusion_matrix(labels, logits.argmax(-1), labels=range(k)))
    json.dumps(result, allow_nan=False)
    lines = format_lines(result)
    assert lines[0].startswith(f"test: {n} clips, {k} classes, top-1 {100 * result['top1']:.2f}%, top-5 ")
    assert len(lines) == 2 + k and lines[2].split() == [names(k)[0], f"{100 * result['per_class']['class00']:.2f}%"]


def test_evaluation_multilabel_end_to_end():
    scores, targets = random_multilabel(13, 240, 25, tied=False)
    targets[:, 24] = 0
    logits, labels = torch.tensor(scores, dtype=torch.float32), torch.tensor(targets)
    evaluation = ClassifyEvaluation(names(25), multi_label=True, split="val")
    for part in batches(240, 3):
        evaluation.update(logits[part], {"labels": labels[part]})
    result = evaluation.result()
    assert result == {"split": "val", "multi_label": True, "classes": names(25),
                      **multilabel_stats(logits, labels, names(25))}
    ap = [skm.average_precision_score(targets[:, c], logits[:, c].numpy()) for c in range(24)]
    assert result["mAP"] == pytest.approx(np.mean(ap), abs=1e-12)
    json.dumps(result, allow_nan=False)
    lines = format_lines(result)
    assert lines[0].startswith(f"val: 240 clips, 25 classes (24 scored), mAP {result['mAP']:.4f}, mAUC ")
    assert "1 classes without a positive clip, 0 without a negative clip" in lines[1]
    best, worst = lines.index("  10 best APs:"), lines.index("  10 worst APs:")
    shown = [float(line.split()[2]) for line in lines[best + 1:best + 11] + lines[worst + 1:]]
    assert len(shown) == 20 and shown == sorted(shown, reverse=True)
    assert shown[0] == pytest.approx(max(ap), abs=5e-5) and shown[-1] == pytest.approx(min(ap), abs=5e-5)


def test_evaluation_of_nothing():
    result = ClassifyEvaluation(["a", "b"], multi_label=True, split="val").result()
    assert (result["clips"], result["mAP"]) == (0, None)
    assert format_lines(result)[0] == "val: 0 clips, 2 classes (0 scored), mAP -, mAUC -, d-prime -"
    result = ClassifyEvaluation(["a", "b"], multi_label=False, split="val").result()
    assert format_lines(result)[0] == "val: 0 clips, 2 classes, top-1 -, top-2 -, mean class accuracy -"
