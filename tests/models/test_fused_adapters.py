"""Fused adapters (issue 16): each adapter position of a training step as one torch.compile region.

Checked as the other levers are (test_levers.py): against today's eager adapters in float64, on the outputs, the
gradients of every trainable parameter and the BatchNorm running statistics, in train mode with open gates. The
adapter forward compiles without graph breaks (``torch._dynamo.explain``) and with ``fullgraph=True``, which refuses
any tensor read by Python (``.item()``, ``if t``): the region makes no host sync. The kernel counts come from
:mod:`lavish.benchmarking.profiling`. Compiling with inductor needs a C++ compiler and takes about a minute on 2 cores:
one small backbone is compiled here, once.
"""

from __future__ import annotations

import pytest
import torch

from backbone_helpers import open_gates
from lavish.errors import ConfigError
from lavish.models.adapters import PRESETS, adapter_config
from lavish.models.adapters.fused import fusable, joint_added, position_added
from lavish.models.adapters.slots import Streams, add_deltas
from lavish.models.backbone import LavishBackbone, create_backbone, fused_adapters_mode
from lavish.benchmarking.profiling import count_kernels, kernel_profile

VIT = "lavish_vit_micro_patch8_64"


def make(**kwargs) -> LavishBackbone:
    model = LavishBackbone(create_backbone(VIT), adapter_config("lavish"), **kwargs)
    open_gates(model)
    return model.double().train()


def step(model: LavishBackbone, audio, frames):
    """Final tokens of both streams and the gradients of a loss that reads them."""
    model.zero_grad(set_to_none=True)
    out = model(audio, frames)
    (out.audio.pow(2).mean() + out.visual.pow(2).mean()).backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_fused_adapters_equal_eager_adapters_in_float64():
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(4, 96, 64, generator=gen, dtype=torch.float64)
    frames = torch.randn(4, 3, 64, 64, generator=gen, dtype=torch.float64)
    eager, fused = make(), make(fused_adapters=True)
    fused.load_state_dict(eager.state_dict())
    assert fused.fused_adapters == "compile" and eager.fused_adapters == "none"
    with kernel_profile():
        for _ in range(2):  # two steps: the second starts from running statistics the first updated
            ref, ref_grads = step(eager, audio, frames)
            out, grads = step(fused, audio, frames)
            torch.testing.assert_close(out.audio, ref.audio, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(out.visual, ref.visual, rtol=1e-10, atol=1e-12)
            assert grads.keys() == ref_grads.keys() and len(grads) > 20
            for name in grads:
                torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12, msg=name)
            for (name, b1), (_, b2) in zip(eager.named_buffers(), fused.named_buffers()):
                torch.testing.assert_close(b2, b1, rtol=1e-10, atol=1e-13, msg=name)  # BatchNorm running statistics
        eager_count = count_kernels(lambda: step(eager, audio, frames))
        fused_count = count_kernels(lambda: step(fused, audio, frames))
    # same maths in far fewer kernels, and no host sync in either forward + backward
    # (round 2, this float64 step without optimiser: 1317 -> 542 kernels; round 1: 0.63x)
    assert fused_count.kernels < 0.5 * eager_count.kernels
    assert fused_count.by_op["<compiled kernel>"] > 0 and eager_count.by_op["<compiled kernel>"] == 0
    assert fused_count.syncs == eager_count.syncs == 0
    # evaluation runs the eager adapters: same outputs
    with torch.no_grad():
        a, b = eager.eval()(audio, frames), fused.eval()(audio, frames)
    torch.testing.assert_close(b.visual, a.visual, rtol=1e-10, atol=1e-12)


def test_adapter_position_compiles_whole():
    """One graph, no break, for the adapters of a position (both streams' fusion and bottleneck)."""
    slot = PRESETS["ave"].build_slots(32, "av").p1.train()
    pre = Streams(torch.randn(2, 5, 32), torch.randn(2, 7, 32))
    explained = torch._dynamo.explain(slot.deltas)(pre)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def test_fused_adapters_modes_and_refusals():
    assert fused_adapters_mode(False) == "none" and fused_adapters_mode(True) == "compile"
    with pytest.raises(ConfigError, match="fused_adapters='triton' is not valid"):
        fused_adapters_mode("triton")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs a CUDA GPU") as err:
            make(fused_adapters="cuda-graphs")
        assert len(str(err.value).splitlines()) == 1


def lavish_position(dim: int = 32, seed: int = 0):
    """A LAVISH position (AVE preset) in float64, train mode, gates open."""
    torch.manual_seed(seed)
    slot = PRESETS["ave"].build_slots(dim, "av").p1.double().train()
    with torch.no_grad():
        for name, p in slot.named_parameters():
            if name.endswith("gate"):
                p.fill_(0.5)
    return slot


def grads_of(outputs, inputs):
    """Gradients of a fixed, non-uniform linear read-out of ``outputs`` with respect to ``inputs``."""
    loss = sum((o * torch.linspace(-1, 2, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outputs)
    return torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("tokens", [(5, 7), (6, 6)])
def test_stacked_position_is_the_eager_position(tokens):
    """position_added (streams stacked when their shapes match, grouped maps zero-padded when they do not) is
    post + deltas of the eager slot: outputs, gradients of inputs and parameters, BatchNorm running statistics,
    over two steps (the second from the statistics the first updated). Runs eagerly: the maths alone."""
    eager, stacked = lavish_position(), lavish_position()
    assert fusable(stacked) and not fusable(PRESETS["ave"].build_slots(32, "v").p1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        pre = Streams(*(torch.randn(3, n, 32, generator=gen, dtype=torch.float64, requires_grad=True) for n in tokens))
        post = Streams(*(torch.randn(3, n, 32, generator=gen, dtype=torch.float64) for n in tokens))
        ref, out = add_deltas(post, eager.deltas(pre)), position_added(stacked, pre, post)
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
        g_ref = grads_of(ref, [*pre, *eager.parameters()])
        g_out = grads_of(out, [*pre, *stacked.parameters()])
        for a, b in zip(g_out, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)
        for (name, b1), b2 in zip(eager.named_buffers(), stacked.buffers()):
            torch.testing.assert_close(b2, b1, rtol=1e-12, atol=1e-14, msg=name)


def test_joint_position_compiled_is_the_eager_position():
    """joint_added, compiled as the backbone compiles it (one region, fullgraph, static shapes), on the joint
    (2B', N, C) tensor of both streams, against the eager slot in float64 over two steps."""
    eager, fused = lavish_position(), lavish_position()
    compiled = torch.compile(lambda pre, post: joint_added(fused, pre, post), fullgraph=True, dynamic=False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        pre = torch.randn(6, 5, 32, generator=gen, dtype=torch.float64, requires_grad=True)
        post = torch.randn(6, 5, 32, generator=gen, dtype=torch.float64, requires_grad=True)
        ref = torch.cat(add_deltas(Streams(*post.split(3)), eager.deltas(Streams(*pre.split(3)))))
        out = compiled(pre, post)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)
        for a, b in zip(grads_of([out], [pre, post, *fused.parameters()]),
                        grads_of([ref], [pre, post, *eager.parameters()])):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)
        for (name, b1), b2 in zip(eager.named_buffers(), fused.buffers()):
            torch.testing.assert_close(b2, b1, rtol=1e-12, atol=1e-14, msg=name)


def test_stacked_positions_trace_whole():
    """One graph, no break, for the stacked position: joint, same-shape and ragged streams."""
    slot = PRESETS["ave"].build_slots(32, "av").p1.train()
    x = torch.randn(4, 5, 32)
    explained = torch._dynamo.explain(joint_added)(slot, x, x.clone())
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    pre = Streams(torch.randn(2, 5, 32), torch.randn(2, 7, 32))
    explained = torch._dynamo.explain(position_added)(slot, pre, Streams(pre.audio.clone(), pre.visual.clone()))
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
