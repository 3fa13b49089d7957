"""Benchmark: cost of one AVE training step of every adapter method against the frozen-backbone floor (issue 8).

Variants (``VARIANTS``; add ``+ckpt`` to a name for activation checkpointing of the frozen blocks):

* ``floor``: the frozen timm backbone alone, both streams through timm's own blocks (as one batch where their
  shapes match), forward + backward down to the patch-embedded tokens (made to require grad, so the backward
  runs through every block; no weight gradients), then pooled features -> the AVE head -> loss. This is what any
  adapter method must pay at least.
* ``lavish2`` / ``lavish16``: LAVISH with the AVE preset and m = 2 / 16 latent tokens; ``avish``: no latents
  (Table 4/5); ``lora``: LoRA r=8 on the attention projections; ``adapter``: bottleneck adapters per modality.

Time: all variants are built in one process and their steps are interleaved (variant order rotated each round),
median of ``repeats`` after one warm-up step each. A step = forward, the authors' loss, backward, AdamW step.
Peak memory: CPU: the peak resident set size (``ru_maxrss``) of a fresh subprocess that builds only that
variant and runs two steps; it includes the interpreter, torch and the weights (about what ``top`` shows), and
``step_mb`` is that peak minus the RSS just before the first step. GPU: ``torch.cuda.max_memory_allocated``.
GEMM peak: a square ``torch.mm`` (n = 2048) in the step's dtype, median of 5, in the same process.
Achieved FLOP/s: FLOPs of one training step from ``torch.utils.flop_counter`` / median step time.
Evaluation: segments/s of the LAVISH (m = 2) model in eval mode on the batch, and the latency of one 10-second
clip (10 segments, batch 1) through the model (decoding excluded: see benchmarks/media.py).

Run: python benchmarks/train_step.py --backbone vit_tiny_patch16_224 --videos 1 [--json] [--plot PATH]
Writes benchmarks/results/train_step_<backbone>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

from lavish.media.audio import get_frontend
from lavish.models.adapters import PRESETS, AvishConfig, BottleneckAdapterConfig, LoraConfig, NoAdapterConfig
from lavish.models.ave import AveModel, AveModelConfig
from lavish.models.input_spec import input_spec

RESULTS = Path(__file__).resolve().parent / "results"
SEGMENTS = 10  # AVE: 10 one-second segments per video
NUM_CLASSES = 29
DEFAULT_VARIANTS = ("floor", "lavish2", "lavish16", "avish", "lora", "adapter")
PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16}
SWEEP_LATENTS = (1, 2, 4, 8, 16, 32, 64)


def _bottleneck_fields(cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in dataclasses.asdict(PRESETS["ave"]).items() if k in names and k != "num_latents"}


#: variant name -> adapter config (None: the frozen-backbone floor)
VARIANTS = {
    "floor": lambda: None,
    "lavish2": lambda: dataclasses.replace(PRESETS["ave"], num_latents=2),
    "lavish16": lambda: dataclasses.replace(PRESETS["ave"], num_latents=16),
    "avish": lambda: AvishConfig(**{k: v for k, v in _bottleneck_fields(AvishConfig).items() if k != "formulation"}),
    "lora": lambda: LoraConfig(),
    "adapter": lambda: BottleneckAdapterConfig(**_bottleneck_fields(BottleneckAdapterConfig)),
}


@dataclass
class BenchConfig:
    """What to measure."""

    backbone: str = "lavish_vit_micro_patch8_64"
    videos: int = 2
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    repeats: int = 3
    precision: str = "32"
    checkpointing: bool = False
    """also run floor+ckpt and lavish2+ckpt"""
    memory: bool = True
    """peak RSS of a fresh subprocess per variant (CPU)"""
    eval: bool = True
    threads: int = 0
    """torch intra-op threads (0: torch's default)"""
    variant_list: list[str] = field(init=False)

    def __post_init__(self) -> None:
        names = list(self.variants)
        if self.checkpointing:
            names += [n for n in ("floor+ckpt", "lavish2+ckpt") if n not in names]
        for name in names:
            if split_variant(name)[0] not in VARIANTS:
                raise ValueError(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)} (+ckpt)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.variant_list = names


def split_variant(name: str) -> tuple[str, bool]:
    base, _, suffix = name.partition("+")
    return base, suffix == "ckpt"


class Floor(nn.Module):
    """Frozen timm backbone alone + AVE head. audio (B, T, F, M), frames (B, T, 3, H, W) -> logits (B, T, K)."""

    def __init__(self, backbone: str, checkpointing: bool) -> None:
        super().__init__()
        # the LavishBackbone wrapper is used only for its input handling (patch embedding, audio image)
        self.model = AveModel(AveModelConfig(backbone=backbone, adapter=NoAdapterConfig(), num_classes=NUM_CLASSES))
        self.checkpointing = checkpointing

    def _blocks(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        bb = self.model.backbone
        timm_model = bb.backbone
        run = (lambda blk, t: checkpoint(blk, t, use_reentrant=False)) if self.checkpointing else (lambda blk, t: blk(t))
        if bb.family.name == "swinv2":
            x = x.view(x.shape[0], *grid, x.shape[-1])
            for stage in timm_model.layers:
                x = stage.downsample(x)
                for blk in stage.blocks:
                    x = run(blk, x)
            return timm_model.norm(x).flatten(1, 2)
        for blk in timm_model.blocks:
            x = run(blk, x)
        return timm_model.norm(x)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        bb = self.model.backbone
        b, t = frames.shape[:2]
        with torch.no_grad():
            a, _ = bb.family.embed(bb.audio_image(audio.flatten(0, 1)))
            v, grid = bb.family.embed(frames.flatten(0, 1))
        a, v = a.detach().requires_grad_(), v.detach().requires_grad_()
        if a.shape == v.shape:
            a, v = self._blocks(torch.cat([a, v]), grid).split(a.shape[0])
        else:
            a, v = self._blocks(a, None), self._blocks(v, grid)
        feats = torch.cat([bb.pool(v), bb.pool(a)], dim=-1).view(b, t, -1)
        return self.model.head(feats)


def build(name: str, backbone: str) -> nn.Module:
    base, ckpt = split_variant(name)
    adapter = VARIANTS[base]()
    if adapter is None:
        return Floor(backbone, ckpt)
    return AveModel(AveModelConfig(backbone=backbone, adapter=adapter, num_classes=NUM_CLASSES, checkpointing=ckpt))


def make_batch(backbone: str, videos: int, segments: int = SEGMENTS, seed: int = 0) -> dict:
    """Random inputs of the AVE shapes for ``backbone``: audio (B, T, F, M), frames (B, T, 3, H, W), labels."""
    spec = input_spec(backbone, "ave")
    fe = get_frontend(spec.audio_frontend)
    gen = torch.Generator().manual_seed(seed)
    return {
        "audio": torch.randn(videos, segments, fe.target_frames, fe.num_mel_bins, generator=gen),
        "frames": torch.randn(videos, segments, 3, *spec.frame_size, generator=gen),
        "labels": torch.randint(0, NUM_CLASSES, (videos, segments), generator=gen),
    }


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The authors' AVE loss: BCE(softmax(logits), one-hot), in float32 (same as lavish.tasks.ave.ave_loss)."""
    probs = logits.float().softmax(-1)
    return F.binary_cross_entropy(probs, F.one_hot(labels, logits.shape[-1]).float())


class Stepper:
    """One model, its optimiser and its training step."""

    def __init__(self, model: nn.Module, precision: str) -> None:
        self.model = model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=1e-5)
        self.dtype = PRECISIONS[precision]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=self.dtype)

    def step(self, batch: dict) -> float:
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.model(batch["audio"], batch["frames"])
        loss = loss_fn(logits, batch["labels"])
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(cfg: BenchConfig, name: str) -> dict:
    """Build ``name`` alone, run two steps, report the process's peak RSS (MB) and the part the steps added."""
    torch.manual_seed(0)
    stepper = Stepper(build(name, cfg.backbone), cfg.precision)
    batch = make_batch(cfg.backbone, cfg.videos)
    before = _rss_mb()
    for _ in range(2):
        stepper.step(batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"peak_mb": peak, "step_mb": peak - before}


def measure_memory(cfg: BenchConfig, name: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--backbone", cfg.backbone,
           "--videos", str(cfg.videos), "--precision", cfg.precision, "--threads", str(cfg.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"memory run of {name} failed: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gemm_gflops(dtype: torch.dtype | None, n: int = 2048, repeats: int = 5) -> float:
    """Measured throughput of a square n x n matmul in ``dtype`` (GFLOP/s, 2 n^3 FLOPs per product)."""
    a = torch.randn(n, n, dtype=dtype or torch.float32)
    b = torch.randn(n, n, dtype=dtype or torch.float32)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def step_flops(stepper: Stepper, batch: dict) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        stepper.step(batch)
    return float(counter.get_total_flops())


def adapter_gflops_sweep(backbone: str) -> dict:
    """Adapter GFLOPs per 1-second segment (meta device, no memory) for m in SWEEP_LATENTS and for AVISH."""
    from lavish.models.accounting import count_flops

    spec = input_spec(backbone, "ave")
    fe = get_frontend(spec.audio_frontend)
    inputs = (torch.zeros(1, 1, fe.target_frames, fe.num_mel_bins, device="meta"),
              torch.zeros(1, 1, 3, *spec.frame_size, device="meta"))
    out = {}
    for label, adapter in [(f"m={m}", dataclasses.replace(PRESETS["ave"], num_latents=m)) for m in SWEEP_LATENTS] + \
            [("avish", VARIANTS["avish"]())]:
        with torch.device("meta"):
            model = AveModel(AveModelConfig(backbone=backbone, adapter=adapter))
        out[label] = count_flops(model, *inputs)[1] / 1e9
    return out


def run(cfg: BenchConfig, log=print) -> dict:
    """Measure everything in ``cfg``; returns the result dict (also the JSON)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    names = cfg.variant_list
    memory = {}
    if cfg.memory:  # first, while this process holds no model (big backbones: >10 GB each)
        for name in names:
            log(f"memory: {name} ...")
            memory[name] = measure_memory(cfg, name)
    batch = make_batch(cfg.backbone, cfg.videos)
    torch.manual_seed(0)
    steppers = {name: Stepper(build(name, cfg.backbone), cfg.precision) for name in names}
    for name, s in steppers.items():
        log(f"warm-up: {name} ...")
        s.step(batch)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(cfg.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            steppers[name].step(batch)
            times[name].append(time.perf_counter() - t0)
        log(f"round {r + 1}/{cfg.repeats}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names))
    flops = {name: step_flops(steppers[name], batch) for name in names}
    gemm = gemm_gflops(PRECISIONS[cfg.precision])
    result = {
        "backbone": cfg.backbone, "task": "ave", "videos": cfg.videos, "segments": cfg.videos * SEGMENTS,
        "images": 2 * cfg.videos * SEGMENTS, "precision": cfg.precision, "repeats": cfg.repeats,
        "machine": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(), "torch": torch.__version__, "gemm_gflops": gemm, "variants": {},
    }
    for name in names:
        med = statistics.median(times[name])
        result["variants"][name] = {
            "step_s": med, "all_s": times[name], "gflops_per_step": flops[name] / 1e9,
            "achieved_gflops": flops[name] / med / 1e9, "fraction_of_gemm_peak": flops[name] / med / 1e9 / gemm,
            **({"peak_mb": memory[name]["peak_mb"], "step_mb": memory[name]["step_mb"]} if name in memory else {}),
        }
    if cfg.eval and "lavish2" in steppers:
        result["eval"] = measure_eval(steppers["lavish2"].model, batch, cfg.repeats)
    result["adapter_gflops_per_segment"] = adapter_gflops_sweep(cfg.backbone)
    v = result["variants"]
    main, floor = v.get("lavish2"), v.get("floor")
    if main and floor:
        result.update(lavish_step_s=main["step_s"], floor_step_s=floor["step_s"],
                      lavish_peak_mb=main.get("peak_mb"), floor_peak_mb=floor.get("peak_mb"),
                      achieved_gflops=main["achieved_gflops"], floor_achieved_gflops=floor["achieved_gflops"],
                      time_ratio=main["step_s"] / floor["step_s"])
        if "peak_mb" in main:
            result["memory_ratio"] = main["peak_mb"] / floor["peak_mb"]
        ck = v.get("lavish2+ckpt")
        if ck:
            result["ckpt_time_ratio"] = ck["step_s"] / floor["step_s"]
            if "peak_mb" in ck:
                result["ckpt_memory_ratio"] = ck["peak_mb"] / floor["peak_mb"]
    if "avish" in v and "lavish2" in v:
        sweep = result["adapter_gflops_per_segment"]
        result["avish_lavish_gflops_ratio"] = sweep["avish"] / sweep["m=2"]
        a_over = v["avish"]["step_s"] - v.get("floor", v["lavish2"])["step_s"]
        l_over = v["lavish2"]["step_s"] - v.get("floor", v["lavish2"])["step_s"]
        result["avish_lavish_overhead_time_ratio"] = a_over / l_over if "floor" in v and l_over > 0 else None
    return result


def measure_eval(model: nn.Module, batch: dict, repeats: int) -> dict:
    """Eval-mode throughput on the batch (segments/s) and latency of one 10-second clip (batch 1)."""
    model.eval()
    clip = {k: batch[k][:1] for k in ("audio", "frames")}
    thr, lat = [], []
    with torch.inference_mode():
        model(batch["audio"], batch["frames"])
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(batch["audio"], batch["frames"])
            thr.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model(clip["audio"], clip["frames"]).softmax(-1).argmax(-1)
            lat.append(time.perf_counter() - t0)
    model.train()
    segs = batch["frames"].shape[0] * batch["frames"].shape[1]
    return {"segments_per_s": segs / statistics.median(thr), "predict_10s_clip_s": statistics.median(lat)}


def table(result: dict) -> str:
    """The human-readable table of a result dict."""
    v = result["variants"]
    floor = v.get("floor")
    lines = [f"{result['backbone']}, AVE, {result['videos']} videos = {result['images']} images, "
             f"precision {result['precision']}, {result['threads']} threads, median of {result['repeats']}, "
             f"load average {result['load_average'][0]:.2f}",
             f"{'variant':<14}{'step s':>9}{'x floor':>9}{'peak MB':>10}{'x floor':>9}{'step MB':>9}"
             f"{'GFLOP/step':>12}{'GFLOP/s':>9}{'% GEMM':>8}"]
    for name, r in v.items():
        tr = f"{r['step_s'] / floor['step_s']:.2f}" if floor else "-"
        pk = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-"
        mr = f"{r['peak_mb'] / floor['peak_mb']:.2f}" if floor and "peak_mb" in r and "peak_mb" in floor else "-"
        sm = f"{r['step_mb']:.0f}" if "step_mb" in r else "-"
        lines.append(f"{name:<14}{r['step_s']:>9.3f}{tr:>9}{pk:>10}{mr:>9}{sm:>9}{r['gflops_per_step']:>12.1f}"
                     f"{r['achieved_gflops']:>9.1f}{100 * r['fraction_of_gemm_peak']:>7.0f}%")
    lines.append(f"GEMM peak ({result['precision']}, 2048^3 mm): {result['gemm_gflops']:.1f} GFLOP/s")
    if "eval" in result:
        e = result["eval"]
        lines.append(f"eval (lavish2): {e['segments_per_s']:.1f} segments/s; predict one 10-s clip: "
                     f"{e['predict_10s_clip_s']:.3f} s (model only)")
    if "avish_lavish_gflops_ratio" in result:
        t = result.get("avish_lavish_overhead_time_ratio")
        lines.append(f"AVISH / LAVISH(m=2) adapter GFLOPs: {result['avish_lavish_gflops_ratio']:.1f}x"
                     + (f"; adapter time over the floor: {t:.1f}x" if t else ""))
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path | None:
    """Fig. 4: adapter GFLOPs per segment vs latent tokens (AVISH dashed), measured step times as points."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sweep = result["adapter_gflops_per_segment"]
    ms = [m for m in SWEEP_LATENTS]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ms, [sweep[f"m={m}"] for m in ms], "o-", label="LAVISH adapters (GFLOPs / segment)")
    ax.axhline(sweep["avish"], ls="--", color="gray", label="AVISH (no latents)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("latent tokens m")
    ax.set_ylabel("adapter GFLOPs per 1-s segment")
    v = result["variants"]
    pts = [(m, v[f"lavish{m}"]["step_s"]) for m in (2, 16) if f"lavish{m}" in v]
    if pts:
        ax2 = ax.twinx()
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], "s", color="C3", label="measured step time")
        if "floor" in v:
            ax2.axhline(v["floor"]["step_s"], ls=":", color="C3", label="floor step time")
        ax2.set_ylabel("training step, s")
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left")
    ax.set_title(f"cost vs latent tokens, {result['backbone']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_json(result: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by this script and ``lavish bench``."""
    p.add_argument("--backbone", default=BenchConfig.backbone, help="timm ViT / Swin-V2 name")
    p.add_argument("--videos", type=int, default=BenchConfig.videos, help="videos per step (10 segments each)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated, from {', '.join(VARIANTS)}; '+ckpt' suffix = activation checkpointing")
    p.add_argument("--repeats", type=int, default=BenchConfig.repeats, help="timed steps per variant (median)")
    p.add_argument("--precision", default="32", choices=list(PRECISIONS))
    p.add_argument("--checkpointing", action="store_true", help="also run floor+ckpt and lavish2+ckpt")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-RSS subprocesses")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip eval throughput / predict latency")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--out", help="JSON file (default benchmarks/results/train_step_<backbone>.json)")
    p.add_argument("--plot", help="PNG of cost vs latent tokens (Fig. 4); default next to the JSON")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(backbone=args.backbone, videos=args.videos,
                       variants=tuple(v for v in args.variants.split(",") if v), repeats=args.repeats,
                       precision=args.precision, checkpointing=args.checkpointing, memory=args.memory,
                       eval=args.eval, threads=args.threads)


def main_from_args(args: argparse.Namespace) -> dict:
    cfg = config_from_args(args)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    result = run(cfg, log)
    out = Path(args.out) if args.out else RESULTS / f"train_step_{cfg.backbone}.json"
    write_json(result, out)
    png = plot(result, Path(args.plot) if args.plot else out.with_suffix(".png"))
    if args.json:
        print(json.dumps(result))
    else:
        print(table(result))
        print(f"wrote {out}" + (f" and {png}" if png else ""))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(memory_child(BenchConfig(backbone=args.backbone, videos=args.videos, variants=(args.child,),
                                                  precision=args.precision), args.child)))
        return
    main_from_args(args)


if __name__ == "__main__":
    main()
