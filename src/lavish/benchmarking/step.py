"""Benchmark: cost of one AVE training step of every adapter method against the frozen-backbone floor (issue 8).

Part of the package so that ``lavish bench`` works on any install; ``benchmarks/train_step.py`` runs it from a
source checkout without the CLI. Runs on the CPU or, where torch sees one, on a CUDA GPU (``--device``).

Variants (``VARIANTS``; suffixes: ``+ckpt`` activation checkpointing of whole blocks, ``+ackpt`` of the adapters
only, ``+compile`` the whole training step compiled as one graph as ``lavish train --compile-step`` does (the floor:
its blocks, pooling and head), ``+capture`` the same replayed as CUDA graphs (``--compile-step cuda-graphs``)):

* ``floor``: the frozen timm backbone alone, both streams through timm's own blocks (as one batch where their
  shapes match), forward + backward down to the patch-embedded tokens (made to require grad, so the backward
  runs through every block; no weight gradients), then pooled features -> the AVE head -> loss. This is what any
  adapter method must pay at least.
* ``lavish2`` / ``lavish16``: LAVISH with the AVE preset and m = 2 / 16 latent tokens; ``avish``: no latents
  (Table 4/5); ``lora``: LoRA r=8 on the attention projections; ``adapter``: bottleneck adapters per modality.
* suffixes ``+fused`` / ``+graphs``: the adapters of each position as one ``torch.compile`` region
  (``fused_adapters`` "compile" / "cuda-graphs", :data:`lavish.models.backbone.FUSED_ADAPTERS`).

Time: all variants are built in one process and their steps are interleaved (variant order rotated each round),
median of ``repeats`` after one warm-up step each. A step = forward, the authors' loss, backward, AdamW step.
Peak memory: CPU: the peak resident set size (``ru_maxrss``) of a fresh subprocess that builds only that
variant and runs two steps; it includes the interpreter, torch and the weights (about what ``top`` shows), and
``step_mb`` is that peak minus the RSS just before the first step. GPU: ``torch.cuda.max_memory_allocated``
over two steps of that variant built alone in this process (weights, inputs, activations, gradients and
optimiser state; not the CUDA context), ``step_mb`` the part above what was allocated before the first step.
Saved activations (``saved_mb``, any device): bytes of the tensors autograd keeps for the backward of one training
forward (unique storages, parameters excluded), from ``saved_tensors_hooks``: exact, repeatable, and blind to the
allocator (peak RSS also holds freed-but-cached heap and the transient peak of the backward).
GEMM peak: a square ``torch.mm`` in the step's dtype (n = 2048 on the CPU, 8192 on a GPU), median of 5, same
process. On a GPU every timed region ends with ``torch.cuda.synchronize()``.
Achieved FLOP/s: FLOPs of one training step from ``torch.utils.flop_counter`` / median step time.
Kernels (``kernels``, ``syncs``, ``top_ops``): kernel-level operations and host syncs of one training step, counted
with torch's profiler by :func:`lavish.benchmarking.profiling.count_kernels` (what counts is defined there), where the
variant runs alone. Deterministic; on a GPU a small-batch step's time follows it. The optimiser is AdamW with
``fused=True`` (one multi-tensor update, no host sync: what a capturable GPU step runs), the loss the task's own
(the AVE task's loss, through the registry).
Evaluation: segments/s of the LAVISH (m = 2) model in eval mode on the batch, and the latency of one 10-second
clip (10 segments, batch 1) through the model (decoding excluded: see benchmarks/media.py).

``--kernels-only``: no timed steps, only the kernel counts, kept activations, FLOPs (and peak memory unless
``--no-memory``) of each variant built alone: what a loaded or slow machine can still measure exactly.

Run: lavish bench --task ave --backbone vit_tiny_patch16_224 --videos 1 [--json] [--plot PATH]
(or python -m lavish.benchmarking.step ...). Writes bench-results/train_step_<backbone>_<device>.json unless --out.
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
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

from lavish import fileio
from lavish.media.audio import get_frontend
from lavish.models.adapters import PRESETS, AvishConfig, BottleneckAdapterConfig, LoraAttentionConfig, NoAdapterConfig
from lavish.engine.registry import get_task, input_spec
from lavish.benchmarking.profiling import count_kernels
from lavish.benchmarking.allocator import keep_freed_memory, trim_if_above
from lavish.engine.runner import compiled_for_training

#: default folder of the JSON and PNG results (relative to the working directory)
RESULTS = Path("bench-results")
TASK = "ave"  # the benchmarked task (its model, loss and input size come from the registry)
SEGMENTS = 10  # one-second segments per benchmarked video: an AVE clip
DEFAULT_VARIANTS = ("floor", "lavish2", "lavish16", "avish", "lora", "adapter")
PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16}
SWEEP_LATENTS = (1, 2, 4, 8, 16, 32, 64)


def _model(config) -> nn.Module:
    return get_task(TASK).model_cls(config)


def _config(**fields):
    return get_task(TASK).model_config_cls(**fields)


def _num_classes() -> int:
    """Classes of the benchmarked task's model (its config's default: AVE's 28 events + background)."""
    return _config().num_classes


def _task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The task's training loss of the model output and the labels (AVE: the authors' BCE of softmax)."""
    return get_task(TASK).loss(logits, {"labels": labels})


def _bottleneck_fields(cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in dataclasses.asdict(PRESETS["ave"]).items() if k in names and k != "num_latents"}


#: variant name -> adapter config (None: the frozen-backbone floor)
VARIANTS = {
    "floor": lambda: None,
    "lavish2": lambda: dataclasses.replace(PRESETS["ave"], num_latents=2),
    "lavish16": lambda: dataclasses.replace(PRESETS["ave"], num_latents=16),
    "avish": lambda: AvishConfig(**{k: v for k, v in _bottleneck_fields(AvishConfig).items() if k != "formulation"}),
    "lora": lambda: LoraAttentionConfig(),
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
    """also run floor+ckpt, lavish2+ackpt and lavish2+ckpt"""
    memory: bool = True
    """peak RSS of a fresh subprocess per variant (CPU)"""
    eval: bool = True
    threads: int = 0
    """torch intra-op threads (0: torch's default)"""
    device: str = "auto"
    """"cpu", "cuda" (or "cuda:N"), or "auto": CUDA where torch sees a GPU"""
    kernels_only: bool = False
    """no timed steps: only kernel counts, kept activations, FLOPs (and peak memory unless ``memory`` is off), each
    variant built alone; a few steps per variant instead of 1 + repeats in one process"""
    variant_list: list[str] = field(init=False)

    def __post_init__(self) -> None:
        names = list(self.variants)
        if self.checkpointing:
            names += [n for n in ("floor+ckpt", "lavish2+ackpt", "lavish2+ckpt") if n not in names]
        flags = {name: split_variant(name)[1] for name in names}  # ValueError for an unknown name or suffix
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r}: torch sees no CUDA GPU on this machine")
        for name in names:
            for suffix in {"graphs", "capture"} & flags[name]:
                if torch.device(self.device).type != "cuda":
                    raise ValueError(f"variant {name!r}: +{suffix} replays CUDA graphs, which needs --device cuda "
                                     f"(this run: {self.device})")
        self.variant_list = names


#: variant-name suffixes: "+ckpt" checkpointing of whole blocks, "+ackpt" of the adapters, "+compile" the whole
#: training step compiled as one graph (``compile_step="inductor"``), "+capture" the same replayed as CUDA graphs
#: (``compile_step="cuda-graphs"``, a GPU only), "+fused" each adapter position as one compiled region
#: (``fused_adapters="compile"``), "+graphs" the same replayed as CUDA graphs (``fused_adapters="cuda-graphs"``, a GPU
#: only)
SUFFIXES = ("ckpt", "ackpt", "compile", "capture", "fused", "graphs")
#: suffixes that compile something (their first steps are warm-up, not timed)
COMPILING = frozenset({"compile", "capture", "fused", "graphs"})


def split_variant(name: str) -> tuple[str, frozenset[str]]:
    """"lavish2+ckpt" -> ("lavish2", {"ckpt"}); ValueError for an unknown variant or suffix."""
    base, *suffixes = name.split("+")
    if base not in VARIANTS or not set(suffixes) <= set(SUFFIXES):
        raise ValueError(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}, "
                         f"each with optional suffixes {', '.join('+' + x for x in SUFFIXES)}")
    if {"ckpt", "ackpt"} <= set(suffixes) or (base == "floor" and "ackpt" in suffixes):
        raise ValueError(f"variant {name!r}: +ackpt needs adapters and excludes +ckpt")
    if base in ("floor", "lora") and {"fused", "graphs"} & set(suffixes):
        raise ValueError(f"variant {name!r}: +fused / +graphs need adapter modules, which {base} has not")
    if {"fused", "graphs"} <= set(suffixes):
        raise ValueError(f"variant {name!r}: +graphs already fuses the adapters; give one of +fused, +graphs")
    if {"compile", "capture"} & set(suffixes) and {"ckpt", "ackpt"} & set(suffixes):
        raise ValueError(f"variant {name!r}: +compile / +capture do not compile activation checkpointing")
    if len({"compile", "capture", "fused", "graphs"} & set(suffixes)) > 1:
        raise ValueError(f"variant {name!r}: +compile / +capture compile the whole step, +fused / +graphs the "
                         "adapters: give one of them")
    return base, frozenset(suffixes)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a host clock times it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Floor(nn.Module):
    """Frozen timm backbone alone + AVE head. audio (B, T, F, M), frames (B, T, 3, H, W) -> logits (B, T, K)."""

    def __init__(self, backbone: str, checkpointing: bool) -> None:
        super().__init__()
        # the LavishBackbone wrapper is used only for its input handling (patch embedding, audio image)
        self.model = _model(_config(backbone=backbone, adapter=NoAdapterConfig(), num_classes=_num_classes()))
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
        with torch.no_grad():
            a, _ = bb.family.embed(bb.audio_image(audio.flatten(0, 1)))
            v, grid = bb.family.embed(frames.flatten(0, 1))
        a, v = a.detach().requires_grad_(), v.detach().requires_grad_()
        return self.trunk(a, v, grid, frames.shape[0])

    def trunk(self, a: torch.Tensor, v: torch.Tensor, grid, b: int) -> torch.Tensor:
        """Blocks, pooling, head: patch tokens a, v (B T, N, C) -> logits (B, T, K) (what ``+compile`` compiles:
        the embedding's leaf tensors stay outside the graph)."""
        bb = self.model.backbone
        t = a.shape[0] // b
        if a.shape == v.shape:
            a, v = self._blocks(torch.cat([a, v]), grid).split(a.shape[0])
        else:
            a, v = self._blocks(a, None), self._blocks(v, grid)
        feats = torch.cat([bb.pool(v), bb.pool(a)], dim=-1).view(b, t, -1)
        return self.model.head(feats)


def build(name: str, backbone: str, device: str | torch.device = "cpu") -> nn.Module:
    """The model of variant ``name`` (random-init backbone) on ``device``; ``+compile`` / ``+capture`` compile its
    training step whole as ``lavish train --compile-step`` does (the floor: its blocks, pooling and head)."""
    base, flags = split_variant(name)
    adapter = VARIANTS[base]()
    ckpt = "blocks" if "ckpt" in flags else "adapters" if "ackpt" in flags else "none"
    fused = "cuda-graphs" if "graphs" in flags else "compile" if "fused" in flags else "none"
    step = "cuda-graphs" if "capture" in flags else "inductor" if "compile" in flags else "none"
    if flags & COMPILING:
        # the compiled kernels show in the profiler's kernel count (set before the first compile, in every
        # process of the bench, so that all of them share inductor's cache entries)
        from torch._inductor import config

        config.cpp.enable_kernel_profile = True
    if adapter is None:
        model = Floor(backbone, ckpt == "blocks").to(device)
        if step != "none":
            model.trunk = compiled_for_training(model.trunk, step)
        return model
    model = _model(_config(backbone=backbone, adapter=adapter, num_classes=_num_classes(),
                                    checkpointing=ckpt, fused_adapters=fused)).to(device)
    return model if step == "none" else compiled_for_training(model, step)


def make_batch(backbone: str, videos: int, segments: int = SEGMENTS, seed: int = 0,
               device: str | torch.device = "cpu") -> dict:
    """Random inputs of the AVE shapes for ``backbone``: audio (B, T, F, M), frames (B, T, 3, H, W), labels."""
    spec = input_spec(backbone, TASK)
    fe = get_frontend(spec.audio_frontend)
    gen = torch.Generator().manual_seed(seed)
    batch = {
        "audio": torch.randn(videos, segments, fe.target_frames, fe.num_mel_bins, generator=gen),
        "frames": torch.randn(videos, segments, 3, *spec.frame_size, generator=gen),
        "labels": torch.randint(0, _num_classes(), (videos, segments), generator=gen),
    }
    return {k: v.to(device) for k, v in batch.items()}


class Stepper:
    """One model, its optimiser and its training step. loss(model output, batch["labels"]) -> scalar."""

    def __init__(self, model: nn.Module, precision: str, loss=None) -> None:
        self.model = model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        # foreach: the multi-tensor update a GPU runs by default, also on the CPU (whose default is a loop over the
        # parameters with a host sync each), so that the kernel count is the GPU's
        self.opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
        self.dtype = PRECISIONS[precision]
        self.loss = loss or _task_loss

    def forward_loss(self, batch: dict) -> torch.Tensor:
        with self.autocast():
            out = self.model(batch["audio"], batch["frames"])
        return self.loss(out, batch["labels"])

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        device = next(self.model.parameters()).device
        return torch.autocast(device.type, dtype=self.dtype)

    def step(self, batch: dict) -> float:
        return float(self.run_step(batch).detach())

    def run_step(self, batch: dict) -> torch.Tensor:
        """One training step without reading the loss on the host: forward, loss, backward, optimiser step."""
        torch.compiler.cudagraph_mark_step_begin()  # +capture: a new step (elsewhere a counter, nothing runs)
        self.opt.zero_grad(set_to_none=True)
        loss = self.forward_loss(batch)
        loss.backward()
        self.opt.step()
        return loss


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def step_kernels(stepper: Stepper, batch: dict) -> dict:
    """Kernel-level operations and host syncs of one training step (forward, loss, backward, optimiser step),
    counted by :func:`lavish.benchmarking.profiling.count_kernels` (what counts: that module's docstring)."""
    count = count_kernels(lambda: stepper.run_step(batch))
    return count.to_dict()


def _counts(stepper: Stepper, batch: dict, name: str) -> dict:
    """FLOPs of a step, its kernel count and the activations kept for backward, measured where the variant runs
    alone."""
    saved = None if split_variant(name)[1] & {"compile", "capture"} else saved_activation_mb(stepper, batch)
    return {"flops": step_flops(stepper, batch), "saved_mb": saved, **step_kernels(stepper, batch)}


def memory_child(cfg: BenchConfig, name: str) -> dict:
    """Build ``name`` alone, run two steps, report the process's peak RSS (MB) and the part the steps added;
    then the FLOPs and kept activations (here, not in the timing process, which holds every variant at once)."""
    torch.manual_seed(0)
    stepper = Stepper(build(name, cfg.backbone), cfg.precision)
    batch = make_batch(cfg.backbone, cfg.videos)
    before = _rss_mb()
    for _ in range(2):
        stepper.step(batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"peak_mb": peak, "step_mb": peak - before, **_counts(stepper, batch, name)}


def cuda_memory(cfg: BenchConfig, name: str) -> dict:
    """Peak allocated GPU memory (MB) of two steps of ``name`` built alone, and the part above the pre-step level."""
    device = torch.device(cfg.device)
    torch.cuda.empty_cache()
    torch.manual_seed(0)
    stepper = Stepper(build(name, cfg.backbone, device), cfg.precision)
    batch = make_batch(cfg.backbone, cfg.videos, device=device)
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        stepper.step(batch)
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    counts = _counts(stepper, batch, name)
    del stepper, batch
    torch.cuda.empty_cache()
    return {"peak_mb": peak / 2**20, "step_mb": (peak - before) / 2**20, **counts}


def measure_memory(cfg: BenchConfig, name: str) -> dict:
    if torch.device(cfg.device).type == "cuda":
        return cuda_memory(cfg, name)
    cmd = [sys.executable, "-m", "lavish.benchmarking.step", "--child", name, "--backbone", cfg.backbone,
           "--videos", str(cfg.videos), "--precision", cfg.precision, "--threads", str(cfg.threads),
           "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        lines = out.stderr.strip().splitlines()
        why = lines[-1] if lines else f"exit code {out.returncode}" + (
            " (killed: out of memory?)" if out.returncode in (-9, 137) else "")
        raise RuntimeError(f"memory run of {name} failed: {why}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gemm_gflops(dtype: torch.dtype | None, device: str | torch.device = "cpu", n: int | None = None,
                repeats: int = 5) -> float:
    """Measured throughput of a square n x n matmul in ``dtype`` (GFLOP/s, 2 n^3 FLOPs per product).

    n: 2048 on the CPU, 8192 on a GPU (large enough to fill it) unless given.
    """
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, dtype=dtype or torch.float32, device=device)
    b = torch.randn(n, n, dtype=dtype or torch.float32, device=device)
    torch.mm(a, b)
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def saved_activation_mb(stepper: Stepper, batch: dict) -> float:
    """MB of the tensors autograd keeps for the backward of one training forward (unique storages, parameters
    excluded): the activation memory the adapters and the levers change, exact and independent of the allocator."""
    model = stepper.model
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        # detached: a saved *output* packed as itself would reference its own grad_fn, a cycle through C++ that
        # keeps the whole graph (GBs) alive after this function returns; the graph is never run backward
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = stepper.forward_loss(batch)
    del loss
    return sum(seen.values()) / 2**20


def step_flops(stepper: Stepper, batch: dict) -> float | None:
    """FLOPs of one training step (torch's flop counter); None where the counter cannot trace the model."""
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            stepper.step(batch)
    except Exception:  # noqa: BLE001  (e.g. a torch.compile'd model under the counter's dispatch mode)
        return None
    return float(counter.get_total_flops())


def adapter_gflops_sweep(backbone: str) -> dict:
    """Adapter GFLOPs per 1-second segment (meta device, no memory) for m in SWEEP_LATENTS and for AVISH."""
    from lavish.models.accounting import count_flops

    spec = input_spec(backbone, TASK)
    fe = get_frontend(spec.audio_frontend)
    inputs = (torch.zeros(1, 1, fe.target_frames, fe.num_mel_bins, device="meta"),
              torch.zeros(1, 1, 3, *spec.frame_size, device="meta"))
    out = {}
    for label, adapter in [(f"m={m}", dataclasses.replace(PRESETS["ave"], num_latents=m)) for m in SWEEP_LATENTS] + \
            [("avish", VARIANTS["avish"]())]:
        with torch.device("meta"):
            model = _model(_config(backbone=backbone, adapter=adapter))
        out[label] = count_flops(model, *inputs)[1] / 1e9
    return out


def run(cfg: BenchConfig, log=print) -> dict:
    """Measure everything in ``cfg``; returns the result dict (also the JSON)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    names = cfg.variant_list
    device = torch.device(cfg.device)
    memory = {}
    if cfg.memory:  # first, while this process holds no model (big backbones: >10 GB each)
        for name in names:
            log(f"memory: {name} ...")
            memory[name] = measure_memory(cfg, name)
            log(f"memory: {name}: " + ", ".join(f"{k} {v:.6g}" for k, v in memory[name].items()
                                                if isinstance(v, (int, float))))
    batch = make_batch(cfg.backbone, cfg.videos, device=device)
    times: dict[str, list[float]] = {n: [] for n in names}
    steppers: dict[str, Stepper] = {}
    counted = dict(memory)  # counts made where the variant ran alone (memory children, or here below)
    if cfg.kernels_only:
        for name in names:
            if name not in memory:
                log(f"kernels: {name} ...")
                torch.manual_seed(0)
                stepper = Stepper(build(name, cfg.backbone, device), cfg.precision)
                stepper.step(batch)  # warm-up (compiles the fused regions)
                counted[name] = _counts(stepper, batch, name)
                del stepper
    else:
        torch.manual_seed(0)
        steppers = {name: Stepper(build(name, cfg.backbone, device), cfg.precision) for name in names}
    for name, s in steppers.items():
        log(f"warm-up: {name} ...")
        s.step(batch)
        trim_if_above()
        if split_variant(name)[1] & COMPILING:
            s.step(batch)  # a second call may recompile (dynamic shapes, grad mode): keep it out of the timing
    for r in range(cfg.repeats if steppers else 0):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            synchronize(device)
            t0 = time.perf_counter()
            steppers[name].step(batch)
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
            trim_if_above()  # several big variants in one process: keep the kept heap below 60 % of RAM
        log(f"round {r + 1}/{cfg.repeats}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names))
    counts = {name: counted[name] if name in counted else _counts(steppers[name], batch, name) for name in names}
    flops = {name: counts[name]["flops"] for name in names}
    saved = {name: counts[name]["saved_mb"] for name in names}
    gemm = None if cfg.kernels_only else gemm_gflops(PRECISIONS[cfg.precision], device)
    result = {
        "backbone": cfg.backbone, "task": TASK, "videos": cfg.videos, "segments": cfg.videos * SEGMENTS,
        "images": 2 * cfg.videos * SEGMENTS, "precision": cfg.precision,
        "repeats": 0 if cfg.kernels_only else cfg.repeats,
        "device": device.type, "device_name": _device_name(device),
        "machine": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(), "torch": torch.__version__, "gemm_gflops": gemm, "variants": {},
    }
    for name in names:
        med = statistics.median(times[name]) if times[name] else None
        gflop = flops[name] / 1e9 if flops[name] is not None else None
        result["variants"][name] = {
            "step_s": med, "all_s": times[name], "gflops_per_step": gflop,
            "achieved_gflops": gflop / med if gflop and med else None,
            "fraction_of_gemm_peak": gflop / med / gemm if gflop and med else None, "saved_mb": saved.get(name),
            "kernels": counts[name]["kernels"], "syncs": counts[name]["syncs"], "top_ops": counts[name]["top_ops"],
            **({"peak_mb": memory[name]["peak_mb"], "step_mb": memory[name]["step_mb"]} if name in memory else {}),
        }
    if cfg.eval and "lavish2" in steppers:  # (not with kernels_only, which keeps no model)
        result["eval"] = measure_eval(steppers["lavish2"].model, batch, cfg.repeats, cfg.precision)
    result["adapter_gflops_per_segment"] = adapter_gflops_sweep(cfg.backbone)
    v = result["variants"]
    main, floor = v.get("lavish2"), v.get("floor")
    if main and floor:
        result.update(lavish_step_s=main["step_s"], floor_step_s=floor["step_s"],
                      lavish_peak_mb=main.get("peak_mb"), floor_peak_mb=floor.get("peak_mb"),
                      achieved_gflops=main["achieved_gflops"], floor_achieved_gflops=floor["achieved_gflops"],
                      time_ratio=main["step_s"] / floor["step_s"] if floor["step_s"] else None,
                      lavish_kernels=main["kernels"], floor_kernels=floor["kernels"],
                      kernel_ratio=main["kernels"] / floor["kernels"])
        if "peak_mb" in main:
            result["memory_ratio"] = main["peak_mb"] / floor["peak_mb"]
        if main.get("saved_mb") and floor.get("saved_mb"):
            result.update(lavish_saved_mb=main["saved_mb"], floor_saved_mb=floor["saved_mb"],
                          saved_ratio=main["saved_mb"] / floor["saved_mb"])
        for prefix, variant in (("ckpt", "lavish2+ckpt"), ("ackpt", "lavish2+ackpt"), ("fused", "lavish2+fused"),
                                ("compile", "lavish2+compile"), ("capture", "lavish2+capture")):
            ck = v.get(variant)
            if ck:
                result[f"{prefix}_time_ratio"] = ck["step_s"] / floor["step_s"] if floor["step_s"] else None
                result[f"{prefix}_kernel_ratio"] = ck["kernels"] / floor["kernels"]
                if "peak_mb" in ck:
                    result[f"{prefix}_memory_ratio"] = ck["peak_mb"] / floor["peak_mb"]
                if ck.get("saved_mb") and floor.get("saved_mb"):
                    result[f"{prefix}_saved_ratio"] = ck["saved_mb"] / floor["saved_mb"]
    for suffix, done in (("compile", "compiled"), ("capture", "captured")):
        # the whole-step variants against the floor compiled the same way: what the adapters cost in that mode
        lav, flo = v.get(f"lavish2+{suffix}"), v.get(f"floor+{suffix}")
        if lav and flo:
            if lav["step_s"] and flo["step_s"]:
                result[f"{suffix}_over_{done}_floor_time_ratio"] = lav["step_s"] / flo["step_s"]
            result[f"{suffix}_over_{done}_floor_kernel_ratio"] = lav["kernels"] / flo["kernels"]
            if "peak_mb" in lav and "peak_mb" in flo:
                result[f"{suffix}_over_{done}_floor_memory_ratio"] = lav["peak_mb"] / flo["peak_mb"]
    if "avish" in v and "lavish2" in v and not cfg.kernels_only:
        sweep = result["adapter_gflops_per_segment"]
        result["avish_lavish_gflops_ratio"] = sweep["avish"] / sweep["m=2"]
        a_over = v["avish"]["step_s"] - v.get("floor", v["lavish2"])["step_s"]
        l_over = v["lavish2"]["step_s"] - v.get("floor", v["lavish2"])["step_s"]
        result["avish_lavish_overhead_time_ratio"] = a_over / l_over if "floor" in v and l_over > 0 else None
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def measure_eval(model: nn.Module, batch: dict, repeats: int, precision: str = "32") -> dict:
    """Eval-mode throughput on the batch (segments/s) and latency of one 10-second clip (batch 1)."""
    model.eval()
    device = batch["frames"].device
    dtype = PRECISIONS[precision]
    cast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    clip = {k: batch[k][:1] for k in ("audio", "frames")}
    thr, lat = [], []
    with torch.inference_mode(), cast:
        model(batch["audio"], batch["frames"])
        model(clip["audio"], clip["frames"])
        for _ in range(repeats):
            synchronize(device)
            t0 = time.perf_counter()
            model(batch["audio"], batch["frames"])
            synchronize(device)
            thr.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model(clip["audio"], clip["frames"]).softmax(-1).argmax(-1).cpu()
            lat.append(time.perf_counter() - t0)
    model.train()
    segs = batch["frames"].shape[0] * batch["frames"].shape[1]
    return {"segments_per_s": segs / statistics.median(thr), "predict_10s_clip_s": statistics.median(lat)}


def table(result: dict) -> str:
    """The human-readable table of a result dict."""
    v = result["variants"]
    floor = v.get("floor")
    where = (f"{result.get('device_name')}" if result.get("device") == "cuda"
             else f"CPU, {result['threads']} threads, load average {result['load_average'][0]:.2f}")
    lines = [f"{result['backbone']}, AVE, {result['videos']} videos = {result['images']} images, "
             f"precision {result['precision']}, median of {result['repeats']}, {where}",
             f"{'variant':<16}{'step s':>9}{'x floor':>9}{'kernels':>9}{'x floor':>9}{'peak MB':>10}{'x floor':>9}"
             f"{'step MB':>9}{'saved MB':>10}{'x floor':>9}{'GFLOP/step':>12}{'GFLOP/s':>9}{'% GEMM':>8}"]
    for name, r in v.items():
        tr = f"{r['step_s'] / floor['step_s']:.2f}" if floor and r["step_s"] and floor["step_s"] else "-"
        st = f"{r['step_s']:.3f}" if r["step_s"] else "-"
        pk = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-"
        mr = f"{r['peak_mb'] / floor['peak_mb']:.2f}" if floor and "peak_mb" in r and "peak_mb" in floor else "-"
        sm = f"{r['step_mb']:.0f}" if "step_mb" in r else "-"
        sv = f"{r['saved_mb']:.0f}" if r.get("saved_mb") is not None else "-"
        sr = f"{r['saved_mb'] / floor['saved_mb']:.2f}" if floor and r.get("saved_mb") and floor.get("saved_mb") else "-"
        gf = f"{r['gflops_per_step']:.1f}" if r["gflops_per_step"] else "-"
        ach = f"{r['achieved_gflops']:.1f}" if r["achieved_gflops"] else "-"
        frac = f"{100 * r['fraction_of_gemm_peak']:.0f}%" if r["fraction_of_gemm_peak"] else "-"
        kr = f"{r['kernels'] / floor['kernels']:.2f}" if floor else "-"
        lines.append(f"{name:<16}{st:>9}{tr:>9}{r['kernels']:>9}{kr:>9}{pk:>10}{mr:>9}{sm:>9}{sv:>10}{sr:>9}"
                     f"{gf:>12}{ach:>9}{frac:>8}")
    n = 8192 if result.get("device") == "cuda" else 2048
    if result["gemm_gflops"]:
        lines.append(f"GEMM peak ({result['precision']}, {n}^3 mm): {result['gemm_gflops']:.1f} GFLOP/s")
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
    pts = [(m, v[f"lavish{m}"]["step_s"]) for m in (2, 16) if f"lavish{m}" in v and v[f"lavish{m}"]["step_s"]]
    if pts:
        ax2 = ax.twinx()
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], "s", color="C3", label="measured step time")
        if "floor" in v and v["floor"]["step_s"]:
            ax2.axhline(v["floor"]["step_s"], ls=":", color="C3", label="floor step time")
        ax2.set_ylabel("training step, s")
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left")
    ax.set_title(f"cost vs latent tokens, {result['backbone']}")
    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by this script and ``lavish bench``."""
    p.add_argument("--backbone", default=BenchConfig.backbone, help="timm ViT / Swin-V2 name")
    p.add_argument("--videos", type=int, default=BenchConfig.videos, help="videos per step (10 segments each)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated, from {', '.join(VARIANTS)}; suffixes '+ckpt' / '+ackpt' (checkpointing of blocks / adapters), "
                        "'+compile' (the whole step compiled as one graph: train --compile-step), '+capture' (the same "
                        "replayed as CUDA graphs: --compile-step cuda-graphs), '+fused' (each adapter position one "
                        "compiled region: train --fused-adapters), '+graphs' (the same as CUDA graphs: "
                        "--fused-adapters cuda-graphs)")
    p.add_argument("--repeats", type=int, default=BenchConfig.repeats, help="timed steps per variant (median)")
    p.add_argument("--precision", default="32", choices=list(PRECISIONS))
    p.add_argument("--checkpointing", action="store_true", help="also run floor+ckpt, lavish2+ackpt and lavish2+ckpt")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip eval throughput / predict latency")
    p.add_argument("--kernels-only", action="store_true",
                   help="no timed steps: kernel counts, kept activations and FLOPs of one step (and peak memory "
                        "unless --no-memory), each variant built alone")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--device", default="auto", help="cpu, cuda[:N] or auto (CUDA where available; default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--out", help=f"JSON file (default {RESULTS}/train_step_<backbone>_<device>.json)")
    p.add_argument("--plot", help="PNG of cost vs latent tokens (Fig. 4); default next to the JSON")
    p.add_argument("--data", help="prepared AVE cache: also time its training DataLoader (0/1/2 workers) vs the step")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(backbone=args.backbone, videos=args.videos,
                       variants=tuple(v for v in args.variants.split(",") if v), repeats=args.repeats,
                       precision=args.precision, checkpointing=args.checkpointing, memory=args.memory,
                       eval=args.eval, threads=args.threads, device=args.device,
                       kernels_only=getattr(args, "kernels_only", False))


def main_from_args(args: argparse.Namespace) -> dict:
    cfg = config_from_args(args)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    loading = None
    if args.data:  # loader time per batch, first so that a bad cache fails fast; imported here, not at the top,
        # so that the memory children (python -m lavish.benchmarking.step --child) do not also load Lightning
        from lavish.benchmarking.loader import loading_table, measure_loading
        loading = measure_loading(args.data, batch_size=cfg.videos, device=cfg.device, backbone=cfg.backbone)
    result = run(cfg, log)
    if loading is not None:
        result["data_loading"] = loading
    out = Path(args.out) if args.out else RESULTS / f"train_step_{cfg.backbone}_{torch.device(cfg.device).type}.json"
    fileio.write_json(out, result, indent=2)
    png = plot(result, Path(args.plot) if args.plot else out.with_suffix(".png"))
    if args.json:
        print(json.dumps(result))
    else:
        print(table(result))
        if loading is not None:
            print(loading_table(loading, step_s=result["variants"].get("lavish2", {}).get("step_s")))
        print(f"wrote {out}" + (f" and {png}" if png else ""))
    return result


def main() -> None:
    keep_freed_memory()  # as the lavish CLI does (lavish.benchmarking.allocator)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(memory_child(BenchConfig(backbone=args.backbone, videos=args.videos, variants=(args.child,),
                                                  precision=args.precision, device="cpu"), args.child)))
        return
    main_from_args(args)


if __name__ == "__main__":
    main()
