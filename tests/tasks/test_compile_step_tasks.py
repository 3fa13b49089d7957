"""``--compile-step`` on every task: each task model's training forward is captured as ONE graph with the settings
``lavish train --compile-step`` uses (:func:`lavish.engine.runner.compiled_for_training`: fullgraph, static shapes,
the AVQA question LSTM traced, dropout from torch's generator), and the captured forward and backward compute the
eager model's outputs and gradients.

Traced with the "aot_eager" backend (the same dynamo capture and AOTAutograd forward / backward split as inductor,
without its minutes of C++ code generation per model on 2 cores); inductor itself runs end to end in
tests/cli/test_compiled_training.py (AVE training) and tests/benchmarking/test_benchmark.py (the bench's ``+compile``)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch._dynamo.utils import counters

from lavish.media.audio import get_frontend
from lavish.engine.registry import input_spec
from lavish.engine.registry import TASKS, get_task
from lavish.engine.runner import compiled_for_training

MICRO = "lavish_vit_micro_patch8_64"
SEGMENTS = {"ave": 10, "avs": 5, "avqa": 10, "avvp": 10, "classify": 10}


def _inputs(name: str, model_config) -> tuple[torch.Tensor, ...]:
    """Random model inputs of 2 videos (2 questions) in the task's shapes (those of ``lavish info``, made real)."""
    task = get_task(name)
    spec = input_spec(MICRO, name)
    shapes = task.info_inputs(model_config, get_frontend(spec.audio_frontend), spec.frame_size)
    gen = torch.Generator().manual_seed(0)
    out = []
    for i, x in enumerate(shapes):
        shape = (2, SEGMENTS[name], *x.shape[2:]) if i < 2 else (2, *x.shape[1:])
        out.append(torch.randn(shape, generator=gen) if x.dtype.is_floating_point
                   else torch.randint(1, 20, shape, generator=gen))
    if name == "avqa":  # training batches bring the frames of another video as negatives
        out.append(torch.randn(out[1].shape, generator=gen))
    return tuple(out)


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [v for v in (getattr(out, f.name) for f in dataclasses.fields(out)) if isinstance(v, torch.Tensor)]


@pytest.mark.parametrize("name", list(TASKS))
def test_training_forward_is_one_graph_with_the_eager_maths(name):
    task = get_task(name)
    config = task.model_config_cls(backbone=MICRO)
    torch.manual_seed(0)
    eager = task.build_model(config, pretrained=False).train()
    twin = copy.deepcopy(eager)
    inputs = _inputs(name, config)
    compiled = compiled_for_training(twin, "inductor", backend="aot_eager")

    results = []
    for model in (eager, compiled):
        torch.manual_seed(1)  # the same dropout masks in both
        counters.clear()
        outs = _tensors(model(*inputs))
        sum(o.float().square().mean() for o in outs).backward()
        results.append(outs)
        if model is compiled:
            assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"], name
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    grads = [(n, p.grad, q.grad) for (n, p), q in zip(eager.named_parameters(), twin.parameters()) if p.requires_grad]
    assert sum(g is not None for _, g, _ in grads) > 10
    for n, ga, gb in grads:
        assert (ga is None) == (gb is None), n
        if ga is not None:
            torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-6, msg=n)
    for (n, ba), bb in zip(eager.named_buffers(), twin.buffers()):  # BatchNorm running statistics
        torch.testing.assert_close(bb, ba, msg=n)
