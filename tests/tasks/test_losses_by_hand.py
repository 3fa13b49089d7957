"""The task losses against numbers worked out by hand (spec 3.1 AVE, 3.3 AVQA): literal values, not re-computations.

AVE: BCE between the softmax over the K classes and the one-hot label, mean over all B*T*K entries (the authors'
``nn.BCELoss`` on softmax outputs, not a cross-entropy). AVQA: CE(answer) + 0.5 * CE(match), match rows labelled 1
(own frames) / 0 (frames of other videos).
"""

from __future__ import annotations

import math

import pytest
import torch

from lavish.tasks.avqa.model import AvqaOutput
from lavish.tasks.ave.model import ave_loss
from lavish.tasks.avqa.dataset import IGNORE
from lavish.tasks.avqa.model import avqa_loss

LN = math.log

# B=1, T=2, K=3.
# segment 0: logits [0, ln 2, 0] -> exp [1, 2, 1] -> softmax p = [1/4, 1/2, 1/4]; label 1 -> y = [0, 1, 0]
#   BCE entries -[y ln p + (1 - y) ln(1 - p)] = [ln(4/3), ln 2, ln(4/3)]
# segment 1: logits [ln 3, 0, 0] -> exp [3, 1, 1] -> p = [3/5, 1/5, 1/5]; label 2 -> y = [0, 0, 1]
#   BCE entries = [ln(5/2), ln(5/4), ln 5]
# mean over the 6 entries = (2 ln(4/3) + ln 2 + ln(5/2) + ln(5/4) + ln 5) / 6
AVE_LOGITS = [[[0.0, LN(2), 0.0], [LN(3), 0.0, 0.0]]]
AVE_LABELS = [[1, 2]]
AVE_LOSS = 0.6695639201809954
# (a cross-entropy would give (ln 2 + ln 5) / 2 = 1.1513; a sum over classes 3 x 0.6696)
#
# Gradient. With l(p, y) = BCE entry, dl/dp_k = (p_k - y_k) / (p_k (1 - p_k)) =: g_k and dp_k/dz_j = p_k (d_kj - p_j):
# dL/dz_j = (1 / 6) (g_j p_j - p_j sum_k g_k p_k).
# segment 0: g = [4/3, -2, 4/3], g p = [1/3, -1, 1/3], sum = -1/3 -> [5/12, -5/6, 5/12] / 6 = [5/72, -5/36, 5/72]
# segment 1: g = [5/2, 5/4, -5], g p = [3/2, 1/4, -1], sum = 3/4 -> [21/20, 1/10, -23/20] / 6 = [7/40, 1/60, -23/120]
AVE_GRAD = [[[5 / 72, -5 / 36, 5 / 72], [7 / 40, 1 / 60, -23 / 120]]]


def test_ave_loss_is_bce_on_the_softmax_worked_by_hand():
    logits = torch.tensor(AVE_LOGITS, requires_grad=True)
    loss = ave_loss(logits, torch.tensor(AVE_LABELS))
    assert loss.item() == pytest.approx(AVE_LOSS, rel=1e-6)  # float32 computation
    loss.backward()
    torch.testing.assert_close(logits.grad, torch.tensor(AVE_GRAD), rtol=1e-5, atol=1e-7)
    # the hand gradient is the float64 finite difference of the hand loss (checks the derivation above)
    z = torch.tensor(AVE_LOGITS, dtype=torch.float64)

    def hand_loss(z):
        p = z.softmax(-1)
        y = torch.nn.functional.one_hot(torch.tensor(AVE_LABELS), 3).double()
        return -(y * p.log() + (1 - y) * (1 - p).log()).mean()

    assert hand_loss(z).item() == pytest.approx(AVE_LOSS, rel=1e-14)
    eps = 1e-6
    fd = torch.zeros_like(z)
    for idx in ((0, s, k) for s in range(2) for k in range(3)):
        dz = torch.zeros_like(z)
        dz[idx] = eps
        fd[idx] = (hand_loss(z + dz) - hand_loss(z - dz)) / (2 * eps)
    torch.testing.assert_close(fd, torch.tensor(AVE_GRAD, dtype=torch.float64), rtol=1e-8, atol=1e-10)


def test_ave_loss_is_a_mean_over_batch_segments_and_classes():
    # the same two segments as two videos of one segment each: same entries, same mean
    logits = torch.tensor(AVE_LOGITS).reshape(2, 1, 3)
    assert ave_loss(logits, torch.tensor([[1], [2]])).item() == pytest.approx(AVE_LOSS, rel=1e-6)
    # segment 0 alone: (2 ln(4/3) + ln 2) / 3
    assert ave_loss(logits[:1], torch.tensor([[1]])).item() == pytest.approx((2 * LN(4 / 3) + LN(2)) / 3, rel=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_ave_loss_of_a_non_finite_logit_is_nan_not_an_exception(bad):
    logits = torch.tensor(AVE_LOGITS)
    logits[0, 1, 0] = bad
    assert math.isnan(ave_loss(logits, torch.tensor(AVE_LABELS)).item())
    assert math.isfinite(ave_loss(torch.tensor(AVE_LOGITS), torch.tensor(AVE_LABELS)).item())


# AVQA, B=3 questions, A=3 answers, T=1 segment (match rows = B*T = 3 positive + 3 negative).
# answers: row 0 [0, ln 2, 0], label 1: p = 1/2 -> CE ln 2
#          row 1 [ln 3, 0, 0], label 0: p = 3/5 -> CE ln(5/3)
#          row 2 [5, 0, 0], IGNORE (answer never seen in training): not counted
#   answer CE = (ln 2 + ln(5/3)) / 2 = ln(10/3) / 2
# match (label 1 = own frames): posi_0 [0, ln 3]: p1 = 3/4 -> ln(4/3); posi_1 [0, 0]: ln 2; posi_2 [ln 2, ln 2]: ln 2
#       (label 0 = other videos): nega_0 [ln 4, 0]: p0 = 4/5 -> ln(5/4); nega_1 [0, ln 2]: p0 = 1/3 -> ln 3;
#                                 nega_2 [ln 2, 0]: p0 = 2/3 -> ln(3/2)
#   match CE = mean of the 6 rows = ln(4/3 * 2 * 2 * 5/4 * 3 * 3/2) / 6 = ln(30) / 6
# loss = ln(10/3) / 2 + 0.5 * ln(30) / 6
AVQA_ANSWER_LOSS = 0.6019864021629681
AVQA_LOSS = 0.8854195173014809


def _avqa_output(with_negatives: bool) -> AvqaOutput:
    logits = torch.tensor([[0.0, LN(2), 0.0], [LN(3), 0.0, 0.0], [5.0, 0.0, 0.0]])
    posi = torch.tensor([[0.0, LN(3)], [0.0, 0.0], [LN(2), LN(2)]])
    nega = torch.tensor([[LN(4), 0.0], [0.0, LN(2)], [LN(2), 0.0]]) if with_negatives else None
    return AvqaOutput(logits, posi, nega, torch.zeros(3, 1, 4), torch.zeros(3, 1), torch.zeros(3, 1))


def test_avqa_loss_worked_by_hand():
    answers = torch.tensor([1, 0, IGNORE])
    assert avqa_loss(_avqa_output(True), answers).item() == pytest.approx(AVQA_LOSS, rel=1e-6)
    # evaluation batches have no negatives: the answer CE alone
    assert avqa_loss(_avqa_output(False), answers).item() == pytest.approx(AVQA_ANSWER_LOSS, rel=1e-6)
    # the match labels matter: swapping positives and negatives changes the value
    out = _avqa_output(True)
    swapped = AvqaOutput(out.logits, out.match_nega, out.match_posi, out.spatial, out.temporal_visual,
                         out.temporal_audio)
    assert abs(avqa_loss(swapped, answers).item() - AVQA_LOSS) > 0.1
