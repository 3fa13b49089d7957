"""Scaling of a LAVISH training step with segments, batch, latent tokens and image size (issue 8, scaling note).

For each point, LAVISH (AVE preset, m latent tokens) and the frozen-backbone floor are built on the same random-init
backbone and their training steps interleaved (median of ``--repeats`` after a warm-up). A step here is the
backbone's forward on B' = videos x segments audio and visual images, mean-pooled features -> a linear layer ->
squared-error loss, backward, AdamW: the task heads are left out, so that only what scales with the backbone is
timed. Floor = the same backbone without adapters but with its LayerNorm affines trainable, which makes the
backward run through every frozen block (the adapters' floor; the extra LayerNorm gradients are < 0.1 % of the
FLOPs). Memory = the activations autograd keeps for backward (``lavish.benchmarking.step.saved_activation_mb``:
exact and allocator-independent).

Sweeps (one factor at a time from the base point: 1 video x 10 segments, m = 2, the backbone's image size):
segments, videos, latent tokens, image size (ViT: tokens grow with the square of the side). Each sweep gets a
least-squares fit: linear (a + b x) for segments, videos and latents, a power law (c x^k, fitted in log-log)
for image size.

Run: python benchmarks/scaling.py [--backbone vit_small_patch16_224] [--repeats 3]
Writes bench-results/scaling_<backbone>.json and prints one table per sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lavish.models.adapters import PRESETS, NoAdapterConfig
from lavish.models.backbone import LavishBackbone, create_backbone
from lavish.benchmarking.allocator import keep_freed_memory
from lavish.engine.registry import input_spec
from lavish.benchmarking.step import RESULTS, Stepper, saved_activation_mb
from lavish.fileio import write_json

SWEEPS = {
    "segments": (2, 5, 10, 20),
    "videos": (1, 2, 4),
    "latents": (1, 2, 4, 8, 16, 32),
    "image_size": (128, 160, 192, 224),
}
BASE = {"segments": 10, "videos": 1, "latents": 2, "image_size": None}
AUDIO_SHAPE = (96, 128)  # (time frames, mel bins) of the audio image: fixed, only the frames change size


class BackboneStep(nn.Module):
    """audio (B', F, M), frames (B', 3, S, S) -> (B', 1): backbone, mean-pooled features of both streams, linear."""

    def __init__(self, backbone: LavishBackbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(2 * backbone.num_features, 1)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        out = self.backbone(audio, frames)
        return self.head(torch.cat([out.audio.mean(1), out.visual.mean(1)], -1))


def squared_loss(pred: torch.Tensor, _labels) -> torch.Tensor:
    return pred.float().pow(2).mean()


def build(name: str, image_size: int, latents: int | None) -> BackboneStep:
    """latents None: the floor (no adapters, LayerNorm affines trainable)."""
    torch.manual_seed(0)
    timm_model = create_backbone(name, img_size=image_size)
    if latents is None:
        bb = LavishBackbone(timm_model, NoAdapterConfig(), train_norms=True)
    else:
        bb = LavishBackbone(timm_model, dataclasses.replace(PRESETS["ave"], num_latents=latents))
    return BackboneStep(bb)


def measure_point(name: str, videos: int, segments: int, latents: int, image_size: int, repeats: int) -> dict:
    """Median step time and saved activations of LAVISH and the floor at one point."""
    n = videos * segments
    gen = torch.Generator().manual_seed(0)
    batch = {"audio": torch.randn(n, *AUDIO_SHAPE, generator=gen),
             "frames": torch.randn(n, 3, image_size, image_size, generator=gen), "labels": None}
    steppers = {"floor": Stepper(build(name, image_size, None), "32", loss=squared_loss),
                "lavish": Stepper(build(name, image_size, latents), "32", loss=squared_loss)}
    for s in steppers.values():
        s.step(batch)
    times: dict[str, list[float]] = {k: [] for k in steppers}
    for r in range(repeats):
        for key in (list(steppers) if r % 2 == 0 else list(steppers)[::-1]):
            t0 = time.perf_counter()
            steppers[key].step(batch)
            times[key].append(time.perf_counter() - t0)
    out = {"videos": videos, "segments": segments, "latents": latents, "image_size": image_size, "images": 2 * n}
    for key, s in steppers.items():
        out[f"{key}_step_s"] = statistics.median(times[key])
        out[f"{key}_saved_mb"] = saved_activation_mb(s, batch)
    out["time_ratio"] = out["lavish_step_s"] / out["floor_step_s"]
    out["saved_ratio"] = out["lavish_saved_mb"] / out["floor_saved_mb"]
    return out


def fit_linear(xs: list[float], ys: list[float]) -> dict:
    """Least squares y = a + b x (numpy.polyfit); returns a, b and R^2."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    b, a = np.polyfit(x, y, 1)
    ss_tot = float(((y - y.mean()) ** 2).sum()) or 1e-30
    return {"kind": "linear", "a": float(a), "b": float(b), "r2": 1 - float(((y - a - b * x) ** 2).sum()) / ss_tot}


def fit_power(xs: list[float], ys: list[float]) -> dict:
    """Least squares log y = log c + k log x; returns c, k and R^2 (in log space)."""
    lin = fit_linear([math.log(x) for x in xs], [math.log(y) for y in ys])
    return {"kind": "power", "c": math.exp(lin["a"]), "k": lin["b"], "r2": lin["r2"]}


def run(name: str, repeats: int, sweeps: dict[str, tuple[int, ...]] = SWEEPS, log=print) -> dict:
    base = dict(BASE)
    if base["image_size"] is None:
        base["image_size"] = input_spec(name).frame_size[0]
    result = {"backbone": name, "repeats": repeats, "base": base, "threads": torch.get_num_threads(),
              "machine": platform.platform(), "torch": torch.__version__, "sweeps": {}}
    for factor, values in sweeps.items():
        points = []
        for value in values:
            point = measure_point(name, **{**base, factor: value}, repeats=repeats)
            log(f"{factor}={value}: floor {point['floor_step_s']:.3f}s lavish {point['lavish_step_s']:.3f}s "
                f"({point['time_ratio']:.2f}x), saved {point['floor_saved_mb']:.0f} / {point['lavish_saved_mb']:.0f} MB")
            points.append(point)
        fit = fit_power if factor == "image_size" else fit_linear
        xs = [p[factor] for p in points]
        fits = {f"{key}_{what}": fit(xs, [p[f"{key}_{what}"] for p in points])
                for key in ("floor", "lavish") for what in ("step_s", "saved_mb")}
        result["sweeps"][factor] = {"points": points, "fits": fits}
    result["load_average"] = os.getloadavg()
    return result


def table(result: dict) -> str:
    lines = [f"{result['backbone']}: base point {result['base']}, CPU {result['threads']} threads, "
             f"median of {result['repeats']}, load average at the end {result['load_average'][0]:.2f}"]
    for factor, sweep in result["sweeps"].items():
        lines.append(f"\n{factor:>10} {'floor s':>9} {'lavish s':>9} {'x':>6} {'floor MB':>9} {'lavish MB':>10} {'x':>6}")
        for p in sweep["points"]:
            lines.append(f"{p[factor]:>10} {p['floor_step_s']:>9.3f} {p['lavish_step_s']:>9.3f} {p['time_ratio']:>6.2f} "
                         f"{p['floor_saved_mb']:>9.0f} {p['lavish_saved_mb']:>10.0f} {p['saved_ratio']:>6.2f}")
        for key, f in sweep["fits"].items():
            if f["kind"] == "linear":
                lines.append(f"   fit {key}: {f['a']:.4g} + {f['b']:.4g} x {factor}  (R^2 {f['r2']:.3f})")
            else:
                lines.append(f"   fit {key}: {f['c']:.4g} x {factor}^{f['k']:.2f}  (R^2 {f['r2']:.3f})")
    return "\n".join(lines)


def main() -> None:
    keep_freed_memory()  # as the lavish CLI does
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="vit_small_patch16_224", help="timm ViT name (image size sweep needs ViT)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sweeps", default=",".join(SWEEPS), help=f"comma-separated subset of {', '.join(SWEEPS)}")
    p.add_argument("--out", help=f"JSON file (default {RESULTS}/scaling_<backbone>.json)")
    args = p.parse_args()
    chosen = {k: SWEEPS[k] for k in args.sweeps.split(",") if k}
    result = run(args.backbone, args.repeats, chosen)
    out = Path(args.out) if args.out else RESULTS / f"scaling_{args.backbone}.json"
    write_json(out, result, indent=2)
    print(table(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
