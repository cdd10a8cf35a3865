"""The training loop: standalone nets and weight-sharing supernets, resumable, DDP-aware."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from nas._errors import CheckpointError, ConfigError
from nas.arch import ArchConfig
from nas.checkpoint import load_checkpoint, save_checkpoint
from nas.data import BatchLoader, DataSplits, mix_seed
from nas.io import write_text_atomic
from nas.models import SUPERNET_LAYOUT, ModelLayout, ReferenceNet, ShuffleNetV2, Supernet
from nas.space import SearchSpace
from nas.train import _distributed
from nas.train._config import TrainConfig, lr_at
from nas.train._evaluate import evaluate, loader_for, subnet_accuracy
from nas.train._steps import epoch_summary, model_step, rate, sgd, supernet_step
from nas.train._strategies import make_strategy

FINAL = {"supernet": "supernet.pt", "model": "model.pt"}
STATE = "train_state.pt"
LOG = "train_log.jsonl"


Subject = ArchConfig | SearchSpace | ReferenceNet


def fit_to_data(subject: Subject, data: DataSplits) -> Subject:
    """Set the class count and input channels of an arch, space or network to the data's."""
    current = subject.max_arch if isinstance(subject, SearchSpace) else subject
    changes = {
        k: v
        for k, v in (("num_classes", data.num_classes), ("in_channels", data.channels))
        if getattr(current, k) != v
    }
    if not changes:
        return subject
    if isinstance(subject, SearchSpace):
        return subject.with_fixed(**changes)
    return subject.replace(**changes)


_NO_STATS: dict[str, float] = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}


@dataclass
class _Progress:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    # the running epoch's sums and step times: saved with a mid-epoch state, so an epoch
    # resumed after a kill reports the whole epoch, not only the steps after the resume
    epoch_stats: dict[str, float] = field(default_factory=lambda: dict(_NO_STATS))
    step_times: list[float] = field(default_factory=list)


def train(
    subject: Subject,
    data: DataSplits,
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    report_test: bool = True,
    log: Callable[[str], None] = print,
    initial: dict[str, torch.Tensor] | None = None,
    layout: ModelLayout | None = None,
    teacher: nn.Module | None = None,
) -> dict[str, Any]:
    """Train a standalone net (``ArchConfig``, or a ``ReferenceNet`` baseline) or a supernet
    (``SearchSpace``) into ``out``.

    Writes ``model.pt`` or ``supernet.pt`` (plain-dict checkpoint), ``train_log.jsonl``
    (one line per epoch) and, while running, ``train_state.pt`` for ``resume=True``.
    Returns the final checkpoint's metrics. Test accuracy of a standalone net is measured
    once, at the end (``report_test``); nothing is selected on it. ``initial`` weights
    (e.g. a sub-net extracted from a supernet) start the run, to fine-tune them. A
    ``teacher`` (standalone nets only; kept frozen, in eval mode) adds knowledge
    distillation: the loss gains ``config.kd_ratio`` times the cross-entropy against the
    teacher's softmax on the same augmented batch.
    """
    ctx = _distributed.setup(device)
    try:
        run = _Run(
            subject,
            data,
            config,
            Path(out),
            ctx,
            resume,
            progress,
            report_test,
            log,
            layout,
            teacher,
        )
        if initial is not None and run.state.global_step == 0:
            run.model.load_state_dict(initial)
        return run.run()
    finally:
        _distributed.teardown(ctx)


class _Run:
    def __init__(
        self,
        subject: Subject,
        data: DataSplits,
        config: TrainConfig,
        out: Path,
        ctx: _distributed.Distributed,
        resume: bool,
        progress: bool,
        report_test: bool,
        log: Callable[[str], None],
        layout: ModelLayout | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        self.layout = layout  # a pruned model's channels (standalone nets only)
        if teacher is not None and isinstance(subject, SearchSpace):
            raise ConfigError("a teacher distils into a standalone net, not a supernet")
        self.teacher = teacher
        self.subject = fit_to_data(subject, data)
        if self.subject is not subject and ctx.main:
            log(
                f"note: set {'space' if isinstance(subject, SearchSpace) else 'arch'} to the "
                f"data's {data.num_classes} classes and {data.channels} input channel(s)"
            )
        self.data, self.config, self.out, self.ctx = data, config, out, ctx
        self.kind = "supernet" if isinstance(self.subject, SearchSpace) else "model"
        self.progress, self.report_test, self.log = progress, report_test, log
        self.device = ctx.device
        self.cuda = self.device.type == "cuda"
        # bf16 + channels-last for standalone nets only: cuDNN plans each new conv shape a
        # supernet runs at ~50 ms CPU (benchmarks/results/supernet_step_speed_cuda.md)
        self.mixed = self.cuda and self.kind == "model"
        if self.teacher is not None:
            self.teacher = self.teacher.to(self.device).eval().requires_grad_(False)
        torch.manual_seed(config.seed)
        self.strategy = (
            make_strategy(
                config.strategy,
                self.subject,
                num_random=config.num_random,
                width_warmup=config.width_warmup,
            )
            if isinstance(self.subject, SearchSpace)
            else None
        )
        self.model: nn.Module = (
            Supernet(self.subject, config.branch_scale, config.channel_match)
            if isinstance(self.subject, SearchSpace)
            else self.subject.build()
            if isinstance(self.subject, ReferenceNet)
            else ShuffleNetV2(self.subject, layout=layout)
        ).to(self.device)
        if self.mixed:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = sgd(self.model, config)
        resolution = None if self.kind == "supernet" else self._arch().resolution
        self.loader = BatchLoader(
            data.train,
            config.batch_size,
            mean=data.mean,
            std=data.std,
            shuffle=True,
            augment=True,
            resolution=resolution,
            device=self.device,
            drop_last=True,
            seed=config.seed,
            channels_last=self.mixed,
            shard=(ctx.rank, ctx.world),
        )
        if len(self.loader) == 0:
            raise ConfigError(
                f"batch size {config.batch_size} is larger than the training "
                f"split per process ({len(data.train) // ctx.world} images)"
            )
        self.steps_per_epoch = min(len(self.loader), config.steps_per_epoch or len(self.loader))
        self.total_steps = config.epochs * self.steps_per_epoch
        self.state = _Progress()
        self.out.mkdir(parents=True, exist_ok=True)
        self._prepare(resume)
        self.net: nn.Module = self.model
        if ctx.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.cuda else None,
                find_unused_parameters=self.kind == "supernet",
            )

    # -- bookkeeping --------------------------------------------------------------------

    def _arch(self) -> ArchConfig | ReferenceNet:
        assert not isinstance(self.subject, SearchSpace)
        return self.subject

    def _identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {
            "kind": self.kind,
            "train": self.config.to_dict(),
            "data": self.data.info,
        }
        if isinstance(self.subject, SearchSpace):
            ident["space"] = self.subject.to_dict()
            ident["supernet_layout"] = SUPERNET_LAYOUT
            ident["channel_match"] = self.config.channel_match
        elif isinstance(self.subject, ReferenceNet):
            ident["network"] = self.subject.to_dict()
        else:
            ident["arch"] = self.subject.to_dict()
            if self.layout is not None:
                ident["layout"] = self.layout.to_dict()
            if self.teacher is not None:
                ident["distilled"] = True
        return ident

    def _prepare(self, resume: bool) -> None:
        final, state = self.out / FINAL[self.kind], self.out / STATE
        if final.exists():
            raise ConfigError(
                f"{final} already exists: this run is complete "
                "(choose another --out to train again)"
            )
        if state.exists() and not resume:
            raise ConfigError(
                f"{self.out} holds an unfinished run: pass --resume to continue "
                "it, or choose another --out"
            )
        if resume and state.exists():
            saved = load_checkpoint(state, kind=self.kind)
            self._check_compatible(saved)
            self.model.load_state_dict(saved["state_dict"])
            self.optimizer.load_state_dict(saved["optimizer"])
            p = saved["progress"]
            stats = {**_NO_STATS, **p.get("epoch_stats", {})}
            history, times = list(saved.get("history", [])), list(p.get("step_times", []))
            self.state = _Progress(p["epoch"], p["step_in_epoch"], p["global_step"], history)
            self.state.epoch_stats, self.state.step_times = stats, times
            if self.ctx.main:
                self.log(
                    f"resuming from {state}: epoch {p['epoch'] + 1}, "
                    f"step {p['step_in_epoch']}/{self.steps_per_epoch}"
                )

    def _check_compatible(self, saved: dict[str, Any]) -> None:
        now = self._identity()
        for key in ("space", "supernet_layout", "arch", "network", "layout", "distilled", "train"):
            if saved.get(key) != now.get(key):
                raise CheckpointError(
                    f"cannot resume: the {key} differs from the saved run in "
                    f"{self.out}; use the same options or another --out"
                )
        for key in ("cache_key", "spec"):
            if saved["data"].get(key) != now["data"].get(key):
                raise CheckpointError(
                    f"cannot resume: the data ({key}) differs from the saved "
                    f"run in {self.out}; use the same --data"
                )

    def _save_state(self) -> None:
        if not self.ctx.main:
            return
        save_checkpoint(
            self.out / STATE,
            {
                **self._identity(),
                "state_dict": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "progress": {
                    "epoch": self.state.epoch,
                    "step_in_epoch": self.state.step_in_epoch,
                    "global_step": self.state.global_step,
                    "epoch_stats": self.state.epoch_stats,
                    "step_times": self.state.step_times,
                },
                "history": self.state.history,
            },
        )
        self._write_log()

    def _write_log(self) -> None:
        rows = "".join(json.dumps(row) + "\n" for row in self.state.history)
        write_text_atomic(self.out / LOG, rows)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        last_save = time.monotonic()
        try:
            while self.state.epoch < cfg.epochs:
                e = self.state.epoch
                self.loader.set_epoch(e)
                stats, step_times = self.state.epoch_stats, self.state.step_times
                bar = tqdm(
                    total=self.steps_per_epoch,
                    initial=self.state.step_in_epoch,
                    desc=f"epoch {e + 1}/{cfg.epochs}",
                    unit="step",
                    dynamic_ncols=True,
                    disable=not (self.progress and self.ctx.main),
                    leave=False,
                )
                batches = self.loader.batches(self.state.step_in_epoch)
                while self.state.step_in_epoch < self.steps_per_epoch:
                    started = time.perf_counter()  # the batch's loading and augmentation count
                    x, y = next(batches)
                    lr = lr_at(self.state.global_step, self.total_steps, cfg)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    loss, correct = self._step(x, y)
                    if self.cuda:
                        torch.cuda.synchronize()
                    step_times.append(time.perf_counter() - started)
                    stats["seconds"] += step_times[-1]
                    stats["loss"] += loss * len(y)
                    stats["correct"] += correct
                    stats["seen"] += len(y)
                    self.state.step_in_epoch += 1
                    self.state.global_step += 1
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{stats['loss'] / stats['seen']:.3f}",
                        acc=f"{stats['correct'] / stats['seen']:.3f}",
                        img_s=f"{rate(len(y) * self.ctx.world, step_times):.0f}",
                    )
                    if time.monotonic() - last_save > cfg.checkpoint_minutes * 60:
                        self._save_state()
                        last_save = time.monotonic()
                bar.close()
                self.state.epoch += 1
                self.state.step_in_epoch = 0
                self.state.epoch_stats, self.state.step_times = dict(_NO_STATS), []
                row = {
                    "epoch": self.state.epoch,
                    "step": self.state.global_step,
                    # the last step's (a resume after an epoch's last step takes no step)
                    "lr": lr_at(self.state.global_step - 1, self.total_steps, cfg),
                    "train_loss": stats["loss"] / max(stats["seen"], 1),
                    "train_acc": stats["correct"] / max(stats["seen"], 1),
                    # images per second at the median step: robust to warm-up and hiccups
                    "img_per_s": rate(cfg.batch_size * self.ctx.world, step_times),
                    "train_seconds": stats["seconds"],
                }
                last = self.state.epoch == cfg.epochs
                if cfg.eval_every and (self.state.epoch % cfg.eval_every == 0 or last):
                    row.update(self._validate())
                self.state.history.append(row)
                if self.ctx.main:
                    self.log(epoch_summary(row, cfg.epochs))
                self._save_state()
                last_save = time.monotonic()
        except KeyboardInterrupt:
            self._save_state()
            raise
        return self._finish()

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        self.optimizer.zero_grad(set_to_none=True)
        if self.kind == "model":
            loss, logits = model_step(self.net, self.teacher, x, y, self.config, self.mixed)
        else:
            assert self.strategy is not None
            step = self.state.global_step
            rng = random.Random(mix_seed(self.config.seed, self.ctx.rank, step))
            draws = self.strategy.draw(rng, step / self.total_steps)
            loss, logits = supernet_step(
                self.net, draws, x, y, self.config, self.mixed, self.ctx.enabled
            )
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss, int((logits.argmax(1) == y).sum())

    def _validate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.ctx.main:
            if isinstance(self.model, Supernet):
                for label, arch in (
                    ("max", self.model.space.max_arch),
                    ("min", self.model.space.min_arch),
                ):
                    result = subnet_accuracy(
                        self.model,
                        arch,
                        self.data,
                        self.config.bn_batches,
                        device=self.device,
                        seed=self.config.seed,
                    )
                    metrics[f"val_acc_{label}"] = result["acc"]
                    metrics[f"val_loss_{label}"] = result["loss"]
            else:
                result = evaluate(
                    self.model,
                    loader_for(self.data.val, self.data, self._arch(), 256, self.device),
                    self.cuda,
                )
                metrics.update(val_acc=result["acc"], val_loss=result["loss"])
        self.ctx.barrier()
        return metrics

    def _finish(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if self.state.history:
            last = self.state.history[-1]
            metrics = {k: v for k, v in last.items() if k.startswith("val_")}
            rates = [row["img_per_s"] for row in self.state.history]
            metrics["img_per_s"] = sorted(rates)[len(rates) // 2]
            metrics["train_seconds"] = sum(row["train_seconds"] for row in self.state.history)
        if self.ctx.main:
            if self.kind == "model" and self.report_test:
                test = evaluate(
                    self.model,
                    loader_for(self.data.test, self.data, self._arch(), 256, self.device),
                    self.cuda,
                )
                metrics["test_acc"] = test["acc"]
            state_dict = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            path = save_checkpoint(
                self.out / FINAL[self.kind],
                {
                    **self._identity(),
                    "state_dict": state_dict,
                    "metrics": metrics,
                    "epochs": self.state.epoch,
                },
            )
            (self.out / STATE).unlink(missing_ok=True)
            self.log(f"saved {path}")
        self.ctx.barrier()
        return metrics
