#!/usr/bin/env bash
# Issue 16, for a session that is lent a GPU (H100 / H200, ~8 minutes): check the fused adapters against the eager
# ones on the GPU, then print the bf16 step tables (kernels, time, memory) of floor, lavish2, lavish2+fused,
# lavish2+graphs and lavish2+ckpt at 2 and 8 videos for Swin-V2-B and Swin-V2-L, then the whole step captured
# (`lavish train --compile-step cuda-graphs`: floor+capture, lavish2+capture; Swin-V2-L first, the target's
# backbone). Not run yet (no GPU so far).
#
#   bash benchmarks/gpu_step.sh            # from the repository root; JSON under $OUT (or bench-results/)
#
# Each bench writes its JSON; the tables go to stdout. Budget: equivalence ~1 min (compile), each bench ~1.5 min
# (inductor compiles of the 4 Swin stages are cached on disk after the first run, so the 8-video runs reuse them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-bench-results}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# 1. equivalence on the GPU: fused (inductor / Triton) vs eager adapters, fp32, then bf16 within bf16 tolerance
timeout 180 python - <<'EOF'
import sys, torch
sys.path.insert(0, "tests/models")
from backbone_helpers import activate_post_norms, open_gates
from lavish.models.adapters import adapter_config
from lavish.models.backbone import LavishBackbone, create_backbone
from lavish.benchmarking.profiling import count_kernels

def make(fused):
    m = LavishBackbone(activate_post_norms(create_backbone("lavish_swinv2_micro_window4_64", drop_path_rate=0.0)),
                       adapter_config("lavish"), fused_adapters=fused)
    open_gates(m)
    return m.cuda().train()

def step(m, a, f):
    m.zero_grad(set_to_none=True)
    out = m(a, f)
    (out.audio.pow(2).mean() + out.visual.pow(2).mean()).backward()
    return out, {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}

g = torch.Generator().manual_seed(0)
a, f = torch.randn(8, 64, 64, generator=g).cuda(), torch.randn(8, 3, 64, 64, generator=g).cuda()
for mode in ("compile", "cuda-graphs"):
    eager, fused = make(False), make(mode)
    fused.load_state_dict(eager.state_dict())
    for _ in range(3):
        (r, rg), (o, og) = step(eager, a, f), step(fused, a, f)
    err = max((o.visual - r.visual).abs().max().item(), max((og[k] - rg[k]).abs().max().item() for k in rg))
    bn = max((b1 - b2).abs().max().item() for b1, b2 in zip(eager.buffers(), fused.buffers()) if b1.is_floating_point())
    ke, kf = count_kernels(lambda: step(eager, a, f)).kernels, count_kernels(lambda: step(fused, a, f)).kernels
    print(f"GPU equivalence {mode}: max |out/grad diff| {err:.2e}, BN stats {bn:.2e}, kernels eager {ke} fused {kf}")
    assert err < 1e-3 and bn < 1e-4, "fused adapters differ from the eager ones on the GPU"
EOF

# 2. the tables (bf16, the paper's 2 videos and a larger batch of 8)
for bb in swinv2_base_window12_192 swinv2_large_window12_192; do
  for videos in 2 8; do
    variants=floor,lavish2,lavish2+fused,lavish2+graphs,lavish2+ckpt
    [ "$videos" = 8 ] && variants=floor,lavish2,lavish2+graphs
    timeout 240 python -m lavish.benchmarking.step --device cuda --precision bf16-mixed --backbone "$bb" \
      --videos "$videos" --variants "$variants" --repeats 5 --no-eval \
      --out "$OUT/train_step_${bb}_cuda_bf16_${videos}v_issue16.json" || echo "bench $bb $videos videos failed or timed out"
  done
done

# 3. the whole step compiled and replayed as CUDA graphs (floor and LAVISH alike), 2 videos, bf16; the whole-model
# compile takes minutes cold, so each gets its own time limit and the tables above come first
for bb in swinv2_large_window12_192 swinv2_base_window12_192; do
  timeout 420 python -m lavish.benchmarking.step --device cuda --precision bf16-mixed --backbone "$bb" \
    --videos 2 --variants floor,lavish2,floor+capture,lavish2+capture --repeats 5 --no-eval \
    --out "$OUT/train_step_${bb}_cuda_bf16_2v_capture_issue16.json" || echo "bench capture $bb failed or timed out"
done
