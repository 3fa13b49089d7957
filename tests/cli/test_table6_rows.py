"""The seven Table 6 row configs, read as ``lavish train ave --config`` reads them, train as their rows say.

Each configs/ave/table6_*.yaml goes through the command line's option parsing (config file, AVE preset, adapter
overrides) into an AVE model on the micro Swin-V2 (the rows' Swin-V2-L counts are in tests/cli/test_info.py).
One Adam step on a real loss, gates opened first (they start at zero, which hides every gradient behind them):
every trainable tensor gets a gradient and moves, all of them are adapters or the head, and no frozen backbone
tensor changes. The CMA rows build the cross-modal attention and the plain rows do not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from backbone_helpers import activate_post_norms, open_gates  # noqa: E402
from lavish.cli.main import build_parser  # noqa: E402
from lavish.cli.options import adapter_from_args, apply_config_file  # noqa: E402
from lavish.tasks.ave.model import AveModel, AveModelConfig  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ave"
ROWS = sorted(CONFIGS.glob("table6_*.yaml"))
MICRO_SWIN = "lavish_swinv2_micro_window4_64"
#: row -> (adapter kind, cma)
EXPECTED = {
    "table6_compacter": ("compacter", "none"), "table6_compacter_cma": ("compacter", "direct"),
    "table6_lora": ("lora", "none"), "table6_lora_cma": ("lora", "direct"),
    "table6_adapter": ("adapter", "none"), "table6_adapter_cma": ("adapter", "direct"),
    "table6_lavish": ("lavish", None),
}


def row_model(path: Path) -> AveModel:
    args = build_parser().parse_args(["train", "ave", "--config", str(path), "--backbone", MICRO_SWIN])
    apply_config_file(args)
    adapter = adapter_from_args(args, "ave")
    assert (adapter.kind, getattr(adapter, "cma", None)) == EXPECTED[path.stem]
    torch.manual_seed(0)
    return AveModel(AveModelConfig(backbone=args.backbone, adapter=adapter, modalities=args.modalities))


def test_all_seven_rows_have_a_config() -> None:
    assert [p.stem for p in ROWS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", ROWS, ids=lambda p: p.stem)
def test_one_training_step_moves_only_adapters_and_head(path: Path) -> None:
    model = activate_post_norms(row_model(path)).train()
    open_gates(model)
    names = [n for n, _ in model.named_parameters()]
    fusion = [n for n in names if ".fusion." in n]
    assert bool(fusion) == (EXPECTED[path.stem][1] in ("direct", None))  # LAVISH's own fusion has latents
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    assert trainable and all(n.startswith(("backbone.slots.", "head.")) for n in trainable)
    assert frozen and all(n.startswith("backbone.backbone.") for n in frozen)

    gen = torch.Generator().manual_seed(0)
    audio, frames = torch.randn(1, 2, 64, 64, generator=gen), torch.randn(1, 2, 3, 64, 64, generator=gen)
    labels = torch.randint(0, 29, (1, 2), generator=gen)
    optimiser = torch.optim.Adam(trainable.values(), lr=1e-3)
    loss = F.cross_entropy(model(audio, frames).flatten(0, 1), labels.flatten())
    loss.backward()
    no_grad = [n for n, p in trainable.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"no gradient for {no_grad[:5]}"
    optimiser.step()

    assert not [n for n, p in trainable.items() if torch.equal(p, before[n])]
    assert not [n for n, p in model.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
