"""The LightningModule of every task (:class:`TaskModule`): the task's model, loss, metrics and optimiser."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from lavish.engine.registry import get_task
from lavish.engine.runner import NonFiniteLoss, TrainableCheckpoints, compiled_for_training


class TaskModule(TrainableCheckpoints, L.LightningModule):
    """The LightningModule of every task: the task's model, loss, metrics and optimiser, and nothing else."""

    def __init__(self, task: str, model_config: dict, train_config: dict, pretrained: bool = False,
                 backbone_weights: str | None = None, runtime: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.task = get_task(task)
        config = self.task.model_config_cls.from_dict(model_config, **(runtime or {}))
        self.model = self.task.build_model(config, pretrained=pretrained, backbone_weights=backbone_weights)
        self.train_config = self.task.train_config_cls(**train_config)
        # one ModuleDict per stage ("train" cannot be a ModuleDict key: it is a method of every Module)
        self.train_metrics = nn.ModuleDict(self.task.metrics("train", self.model))
        self.val_metrics = nn.ModuleDict(self.task.metrics("val", self.model))
        self.test_metrics = nn.ModuleDict(self.task.metrics("test", self.model))

    def forward(self, batch: dict) -> Any:
        return self.task.forward(self._step_model() if self.training else self.model, batch)

    def _step_model(self) -> nn.Module:
        """The model a training step runs: ``self.model``, or under ``compile_step`` the same model compiled whole
        (built on first use, kept outside the module tree so that checkpoints and devices see one model)."""
        mode = self.train_config.compile_step
        if mode == "none":
            return self.model
        compiled = self.__dict__.get("_compiled_model")
        if compiled is None:
            compiled = self.__dict__["_compiled_model"] = compiled_for_training(self.model, mode)
        if mode == "cuda-graphs":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten
        return compiled

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self(batch)
        loss = self.task.model_loss(self.model, out, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"training loss is not finite at step {self.global_step} (epoch {self.current_epoch}): {loss.item()}; "
                "stopped, the last good checkpoint is kept in the run's checkpoints/ folder"
            )
        bs = self.task.batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self._log_metrics("train", out, batch, bs)
        return loss

    def _log_metrics(self, stage: str, out: Any, batch: dict, bs: int) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        if not len(metrics):
            return
        self.task.update_metrics(metrics, out, batch)
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, prog_bar=name == self.task.monitored(self.model.config), batch_size=bs,
                     on_step=False, on_epoch=True)

    def _eval_step(self, batch: dict, stage: str) -> None:
        out = self(batch)
        bs = self.task.batch_size(batch)
        if self.task.eval_loss:
            self.log_mean(f"{stage}/loss", self.task.model_loss(self.model, out, batch), batch_size=bs)
        self._log_metrics(stage, out, batch, bs)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        return self.task.configure_optimizers(self)


def head_and_adapter_groups(model: nn.Module, lr_head: float, lr: float) -> list[dict]:
    """Optimiser parameter groups: ``model.head``'s trainable parameters at ``lr_head``, every other trainable
    parameter (adapters, trainable norms) at ``lr`` (the group is left out when there is none)."""
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head, "lr": lr_head, "name": "head"}]
    if rest:
        groups.append({"params": rest, "lr": lr, "name": "adapters"})
    return groups
