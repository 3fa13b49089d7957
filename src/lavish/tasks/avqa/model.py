"""The MUSIC-AVQA model: LAVISH backbone -> AVST-style grounding -> answer classifier (spec 3.3, Table 3).

Per question: 10 one-second segments of audio and frames run through the LAVISH backbone (time folded into the
batch). Visual tokens -> ``yb_fc_v`` (D -> 512) keep their spatial layout; audio tokens -> ``yb_fc_a`` -> mean over
tokens. Then, as the authors' ``AVQA_Fusion_Net`` (AVQA/net_grd_avst/net_avst.py):

* question encoder: Embedding -> tanh -> LSTM -> cat(h_n, c_n) -> tanh -> Linear(1024, 512) = q (B, 512);
* audio: ``fc_a2(ReLU(a))`` (B, T, 512);
* spatial grounding: softmax over the visual tokens of (L2-normalised tokens . L2-normalised audio), attended
  visual vector, ``fc_gl(tanh(cat(avgpool(v), v_att)))`` = v_grd (B*T, 512); a 4-layer match head ``fc1..fc4``
  says whether the audio and frame belong together (positive) or not (negative: frames of other videos);
* temporal grounding: ``nn.MultiheadAttention(512, 4)`` with q as query over the T segments of v_grd and of the
  audio, residual feed-forward + LayerNorm, ``fc_fusion`` over [audio, visual], answer = ``fc_ans(tanh(feat*q))``.

Every module of the authors' class is built, including the ones their forward never reads (``fc_a1``,
``fc_a1_pure``, ``fc_a2_pure``, ``fc_v``, ``fc_st``, ``fc``, ``fc_aq``, ``fc_vq``, ``norm3``): they were trainable and
are part of the paper's 21.09M (spec 7); they are listed in :data:`UNUSED_MODULES` and receive no gradient.

Where we differ from the authors' code, and why:

* negatives (``visual_nega``) run through the plain frozen backbone (timm ``forward_features``, no adapter slots)
  under ``no_grad``, as the authors; their tokens then go through ``yb_fc_v`` with gradient, as theirs;
* ViT backbones: prefix (class) tokens are dropped from the visual tokens before the spatial grounding (the
  authors only ran Swin-V2, which has none);
* the question vocabulary has one more row than the authors' (``'<unk>'``, see :mod:`lavish.tasks.avqa.layout`);
* no AVST grounding pre-training checkpoint is loaded (it is missing from the public repository): the grounding
  modules start from PyTorch's default initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters import AdapterConfig
from lavish.models.task_config import TaskModelConfig, preset_adapter, task_backbone
from lavish.tasks.avqa.dataset import IGNORE


#: the official release: 93 question tokens + '<unk>' and 42 answers (spec 3.3)
AVQA_QUESTION_VOCAB = 94
AVQA_NUM_ANSWERS = 42
HIDDEN = 512

#: modules of the authors' AVQA_Fusion_Net that their forward never reads (counted trainable, spec 3.3 / 7)
UNUSED_MODULES = ("fc_a1", "fc_a1_pure", "fc_a2_pure", "fc_v", "fc_st", "fc", "fc_aq", "fc_vq", "norm3")


@dataclass
class AvqaModelConfig(TaskModelConfig):
    """Model settings; defaults are the authors' AVQA run (spec 4: m=64, r=8, G=4, Swin LayerNorms trained).
    ``modalities``: "av" (LAVISH), "v" (vision only, Table 7: no audio stream; the head's audio feature is zero, so
    the spatial grounding is uniform and the audio temporal branch carries nothing) or "a" (audio only: the visual
    tokens are zero)."""

    adapter: AdapterConfig = preset_adapter("avqa")
    question_vocab: int = AVQA_QUESTION_VOCAB
    """rows of the word embedding (question vocabulary incl. '<pad>' and '<unk>')"""
    num_answers: int = AVQA_NUM_ANSWERS
    train_norms: bool = True
    """train the backbone's LayerNorms (the authors' --is_vit_ln 1)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.question_vocab < 2:
            raise ConfigError(f"question_vocab={self.question_vocab} is not valid: it must be at least 2")
        if self.num_answers < 2:
            raise ConfigError(f"num_answers={self.num_answers} is not valid: it must be at least 2")


class QuestionEncoder(nn.Module):
    """The authors' QstEncoder. ids (B, L) int64 -> q (B, 512)."""

    def __init__(self, vocab: int, embed: int = HIDDEN, hidden: int = HIDDEN, out: int = HIDDEN) -> None:
        super().__init__()
        self.word2vec = nn.Embedding(vocab, embed)
        self.tanh = nn.Tanh()
        self.lstm = nn.LSTM(embed, hidden, num_layers=1)
        self.fc = nn.Linear(2 * hidden, out)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tanh(self.word2vec(ids)).transpose(0, 1)  # (L, B, E)
        self.lstm.flatten_parameters()
        # LSTM in its weights' dtype (float32 unless the model was cast) outside autocast: under CPU bf16 autocast
        # oneDNN has no LSTM primitive ("could not create a primitive descriptor"); the question encoder is 2.7M
        # parameters on 14 tokens, so this costs nothing measurable
        with torch.autocast(device_type="cuda" if ids.is_cuda else "cpu", enabled=False):  # "meta" has no autocast
            _, (h, c) = self.lstm(x.to(self.lstm.weight_ih_l0.dtype))
        feat = torch.cat([h, c], dim=2).transpose(0, 1).reshape(ids.shape[0], -1)  # (B, 2H)
        return self.fc(self.tanh(feat))


@dataclass
class AvqaOutput:
    """logits (B, A); match_posi / match_nega (B*T, 2) or None; spatial (B, T, N) audio-guided attention over
    visual tokens; temporal_visual / temporal_audio (B, T) question-guided attention over segments."""

    logits: torch.Tensor
    match_posi: torch.Tensor
    match_nega: torch.Tensor | None
    spatial: torch.Tensor
    temporal_visual: torch.Tensor
    temporal_audio: torch.Tensor


class AvqaModel(nn.Module):
    """audio (B, T, F, M), frames (B, T, 3, H, W), question (B, L) ids, negatives (B, T, 3, H, W) | None."""

    def __init__(self, config: AvqaModelConfig, *, pretrained: bool = False,
                 backbone_weights: str | Path | None = None, timm_model: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = task_backbone(config, pretrained=pretrained, backbone_weights=backbone_weights,
                                      timm_model=timm_model)
        self.prefix_tokens = int(getattr(self.backbone.backbone, "num_prefix_tokens", 0))
        self.head = AvqaHead(self.backbone.num_features, config.question_vocab, config.num_answers)

    def visual_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B', N, D) -> (B', N_patches, D): drop class/register tokens (ViT)."""
        return tokens[:, self.prefix_tokens:]

    @torch.no_grad()
    def negative_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B', 3, H, W) through the frozen backbone WITHOUT adapters -> (B', N_patches, D)."""
        out = self.backbone.backbone.forward_features(frames)
        return self.visual_tokens(out.flatten(1, -2))

    def forward(self, audio: torch.Tensor, frames: torch.Tensor, question: torch.Tensor,
                negatives: torch.Tensor | None = None) -> AvqaOutput:
        b, t = frames.shape[:2]
        out = self.backbone(audio.flatten(0, 1), frames.flatten(0, 1))
        audio_tokens, visual_tokens = out.audio, out.visual
        # a stream that does not run (modalities "v" / "a") reaches the head as one zero token per segment
        zero = (out.visual if out.visual is not None else out.audio).new_zeros(b * t, 1, self.backbone.num_features)
        audio_tokens = zero if audio_tokens is None else audio_tokens
        if visual_tokens is None:
            visual_tokens, negatives = zero, None  # no frames: no audio-frame matching either
        else:
            visual_tokens = self.visual_tokens(visual_tokens)
        nega = self.negative_tokens(negatives.flatten(0, 1)) if negatives is not None else None
        return self.head(audio_tokens, visual_tokens, question, b, t, nega)


class AvqaHead(nn.Module):
    """Everything after the backbone: the authors' AVQA_Fusion_Net modules (names kept, see module doc)."""

    def __init__(self, dim: int, question_vocab: int, num_answers: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        h = hidden
        self.yb_fc_v = nn.Linear(dim, h)
        self.yb_fc_a = nn.Linear(dim, h)
        self.question_encoder = QuestionEncoder(question_vocab, h, h, h)
        self.fc_a2 = nn.Linear(h, h)
        self.fc_gl = nn.Linear(2 * h, h)
        self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(2 * h, h), nn.Linear(h, 256), nn.Linear(256, 128), nn.Linear(128, 2)
        self.attn_a = nn.MultiheadAttention(h, 4, dropout=0.1)
        self.attn_v = nn.MultiheadAttention(h, 4, dropout=0.1)
        self.linear11, self.linear12 = nn.Linear(h, h), nn.Linear(h, h)
        self.linear21, self.linear22 = nn.Linear(h, h), nn.Linear(h, h)
        self.dropout1, self.dropout2 = nn.Dropout(0.1), nn.Dropout(0.1)
        self.dropout3, self.dropout4 = nn.Dropout(0.1), nn.Dropout(0.1)
        self.norm1, self.norm2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.fc_fusion = nn.Linear(2 * h, h)
        self.fc_ans = nn.Linear(h, num_answers)
        # built and trained by the authors but never read by their forward (spec 3.3): counted, not used
        self.fc_a1, self.fc_a1_pure = nn.Linear(128, h), nn.Linear(128, h)
        self.fc_a2_pure = nn.Linear(h, h)
        self.fc_v = nn.Linear(2048, h)
        self.fc_st, self.fc = nn.Linear(h, h), nn.Linear(2 * h, h)
        self.fc_aq, self.fc_vq = nn.Linear(h, h), nn.Linear(h, h)
        self.norm3 = nn.LayerNorm(h)
        self.dropout = nn.Dropout(0.5)

    def ground(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Spatial grounding. audio (B', 512), visual (B', N, 512) -> v_grd (B', 512), match logits (B', 2),
        attention (B', N)."""
        v_pool = visual.mean(1)
        v_tok = F.normalize(visual, dim=-1)
        a_n = F.normalize(audio, dim=-1)
        att = torch.softmax(torch.einsum("bnc,bc->bn", v_tok, a_n), dim=-1)
        v_att = torch.einsum("bn,bnc->bc", att, v_tok)
        v_grd = self.fc_gl(torch.tanh(torch.cat([v_pool, v_att], dim=-1)))
        x = torch.cat([audio, v_grd], dim=-1)
        match = self.fc4(F.relu(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))))
        return v_grd, match, att

    def _temporal(self, attn, lin1, lin2, drop_in, drop_out, norm, q, seq):
        """q (1, B, 512) over seq (T, B, 512) -> (B, 512) and weights (B, T)."""
        att, weights = attn(q, seq, seq, need_weights=True)
        att = att.squeeze(0)
        att = norm(att + drop_out(lin2(drop_in(F.relu(lin1(att))))))
        return att, weights.squeeze(1)

    def forward(self, audio_tokens, visual_tokens, question, b: int, t: int, negative_tokens=None) -> AvqaOutput:
        """audio_tokens (B*T, Na, D), visual_tokens (B*T, Nv, D), question (B, L), negative_tokens (B*T, Nv, D)."""
        q = self.question_encoder(question)  # (B, 512)
        audio = self.yb_fc_a(audio_tokens).mean(1)  # (B*T, 512)
        audio_feat = self.fc_a2(F.relu(audio))
        v_grd, match_posi, spatial = self.ground(audio_feat, self.yb_fc_v(visual_tokens))
        match_nega = None
        if negative_tokens is not None:
            match_nega = self.ground(audio_feat, self.yb_fc_v(negative_tokens))[1]
        a_seq = audio_feat.view(b, t, -1).transpose(0, 1)  # (T, B, 512)
        v_seq = v_grd.view(b, t, -1).transpose(0, 1)
        query = q.unsqueeze(0)
        v_att, w_v = self._temporal(self.attn_v, self.linear11, self.linear12, self.dropout1, self.dropout2,
                                    self.norm1, query, v_seq)
        a_att, w_a = self._temporal(self.attn_a, self.linear21, self.linear22, self.dropout3, self.dropout4,
                                    self.norm2, query, a_seq)
        feat = torch.cat([a_att + a_seq.mean(0), v_att + v_seq.mean(0)], dim=-1)
        feat = self.fc_fusion(torch.tanh(feat))
        logits = self.fc_ans(torch.tanh(feat * q))
        return AvqaOutput(logits, match_posi, match_nega, spatial.view(b, t, -1), w_v, w_a)


MATCH_WEIGHT = 0.5


# --------------------------------------------------------------------------------------------------- model
def avqa_loss(out: AvqaOutput, answers: torch.Tensor) -> torch.Tensor:
    """CE(answer) + 0.5 * CE(match), in float32. Match rows interleaved [posi_0, nega_0, posi_1, ...] as the
    authors, labels 1 / 0. answers: (B,) int64 (IGNORE rows do not count)."""
    with torch.autocast(device_type=out.logits.device.type, enabled=False):
        loss = F.cross_entropy(out.logits.float(), answers, ignore_index=IGNORE)
        if out.match_nega is not None:
            match = torch.stack([out.match_posi, out.match_nega], dim=1).flatten(0, 1).float()
            labels = torch.ones(match.shape[0], dtype=torch.long, device=match.device)
            labels[1::2] = 0
            loss = loss + MATCH_WEIGHT * F.cross_entropy(match, labels)
    return loss
