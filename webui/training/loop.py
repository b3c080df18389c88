"""A small, reusable training loop: optimiser, warmup + cosine LR, optional EMA,
checkpoint/resume, progress bar and a CSV loss log.

What is trained and how a loss is computed stays with the caller (a
``step_fn``), so the demo model, LoRA and textual-inversion trainers can all
share this loop. Data must be a pure function of the step number for a resumed
run to repeat exactly what an uninterrupted run would have done.

Optional pieces the LoRA / embedding trainers use (all off by default, so the
demo recipe is unchanged): parameter groups with their own learning rates, any
LR multiplier function, gradient accumulation (``step_fn(step, micro)``), a
``GradScaler`` for fp16, an optimizer factory (8-bit AdamW), a per-step
callback and a stop flag. A stopped run saves its state, so ``--resume`` (or the
Train tab's Resume) continues the same loss curve.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm


@dataclass
class LoopConfig:
    """Hyper-parameters and bookkeeping for one training run."""

    out_dir: Path
    max_steps: int
    lr: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05  # cosine floor, as a fraction of lr
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # 0: off
    grad_clip_mode: str = "norm"  # "norm" (total norm) or "value" (each element; A1111's TI option)
    save_every: int = 500
    log_every: int = 20
    ema_max_decay: float | None = None  # None: no EMA
    extra: dict = field(default_factory=dict)  # caller metadata stored in checkpoints
    grad_accum: int = 1  # micro-batches per optimiser step
    lr_lambda: Callable[[int], float] | None = None  # LR multiplier per step; None: warmup_cosine


class EMA:
    """Exponential moving average of parameters, with a warmup on the decay so
    that short runs are not dominated by their random initialisation."""

    def __init__(self, params: list[torch.nn.Parameter], max_decay: float):
        self.params = params
        self.max_decay = max_decay
        self.shadow = [p.detach().clone() for p in params]

    def decay_at(self, step: int) -> float:
        """The decay used after ``step`` optimiser steps."""
        return min(self.max_decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the shadow weights towards the current weights."""
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay_at(step))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily swap the EMA weights into the model (for export or eval)."""
        backup = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)

    def state_dict(self) -> dict:
        """Shadow weights, for the checkpoint."""
        return {"shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        """Restore shadow weights from a checkpoint."""
        with torch.no_grad():
            for s, v in zip(self.shadow, state["shadow"]):
                s.copy_(v)


def warmup_cosine(step: int, cfg: LoopConfig) -> float:
    """LR multiplier: linear warmup, then cosine decay to ``min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine


class TrainLoop:
    """Runs ``step_fn(step) -> loss`` for ``cfg.max_steps`` optimiser steps.

    ``modules`` are saved in and restored from checkpoints by name; only
    ``params`` are optimised (a list of tensors, or torch parameter groups
    ``[{"params": [...], "lr": x}, ...]``). ``on_checkpoint(loop, step)`` runs
    after each checkpoint and at the end (e.g. to export weights in another
    format). With ``cfg.grad_accum > 1`` the step function is called as
    ``step_fn(step, micro)``. ``on_step(loop, step, loss)`` runs after every
    optimiser step; when ``should_stop()`` turns true the loop saves and ends.
    """

    def __init__(
        self,
        cfg: LoopConfig,
        modules: dict[str, torch.nn.Module],
        params: list,
        step_fn: Callable[..., torch.Tensor],
        on_checkpoint: Callable[["TrainLoop", int], None] | None = None,
        *,
        make_optimizer: Callable[[list], torch.optim.Optimizer] | None = None,
        scaler: "torch.amp.GradScaler | None" = None,
        on_step: Callable[["TrainLoop", int, float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        self.cfg = cfg
        self.modules = modules
        groups = params if params and isinstance(params[0], dict) else [{"params": list(params)}]
        self.params = [p for g in groups for p in g["params"]]
        self.step_fn = step_fn
        self.on_checkpoint = on_checkpoint
        self.on_step = on_step
        self.should_stop = should_stop or (lambda: False)
        self.scaler = scaler
        if make_optimizer is not None:
            self.optimizer = make_optimizer(groups)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        lr_lambda = cfg.lr_lambda or (lambda s: warmup_cosine(s, cfg))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)
        self.ema = EMA(self.params, cfg.ema_max_decay) if cfg.ema_max_decay else None
        self.stopped = False  # True when should_stop() ended the run early
        self.step = 0
        self.out_dir = Path(cfg.out_dir)
        self.state_path = self.out_dir / "state.pt"
        self.log_path = self.out_dir / "loss.csv"

    # -- checkpoints -----------------------------------------------------

    def save(self) -> None:
        """Write the full training state atomically, so a kill mid-write keeps the old one."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "extra": self.cfg.extra,
        }
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)
        if self.on_checkpoint:
            self.on_checkpoint(self, self.step)

    def try_resume(self) -> bool:
        """Load the last checkpoint if there is one; True when resumed."""
        if not self.state_path.exists():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        return True

    @contextlib.contextmanager
    def export_weights(self) -> Iterator[None]:
        """Context in which the modules hold the weights to ship (EMA when enabled)."""
        if self.ema:
            with self.ema.applied():
                yield
        else:
            yield

    # -- the loop --------------------------------------------------------

    def _truncate_log(self) -> None:
        # Steps logged after the last checkpoint are about to be run again;
        # drop them so the log reads as one uninterrupted run.
        if not self.log_path.exists():
            return
        lines = self.log_path.read_text().splitlines()
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= self.step]
        self.log_path.write_text("\n".join(kept) + "\n")

    def _log(self, row: str) -> None:
        new = not self.log_path.exists()
        with open(self.log_path, "a") as f:
            if new:
                f.write("step,loss,lr,sec_per_step\n")
            f.write(row + "\n")

    def run(self, resume: bool = False, desc: str = "train") -> None:
        """Train until ``max_steps``, resuming from ``state.pt`` when asked."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.try_resume():
            print(f"[{desc}] resumed at step {self.step}", flush=True)
            self._truncate_log()
        elif self.log_path.exists():
            self.log_path.unlink()  # a fresh run must not append to an old log
        for m in self.modules.values():
            m.train()
        bar = tqdm(total=self.cfg.max_steps, initial=self.step, desc=desc, mininterval=5, dynamic_ncols=True)
        running, n, t0 = 0.0, 0, time.perf_counter()
        while self.step < self.cfg.max_steps:
            if self.should_stop():
                self.stopped = True
                break
            step_loss = self._optimizer_step()
            if self.ema:
                self.ema.update(self.step)
            self.step += 1
            running += step_loss
            n += 1
            bar.update(1)
            if self.step % self.cfg.log_every == 0 or self.step == self.cfg.max_steps:
                dt = (time.perf_counter() - t0) / n
                lr = self.scheduler.get_last_lr()[0]
                self._log(f"{self.step},{running / n:.5f},{lr:.6g},{dt:.3f}")
                bar.set_postfix(loss=f"{running / n:.4f}", lr=f"{lr:.2e}")
                running, n, t0 = 0.0, 0, time.perf_counter()
            if self.step % self.cfg.save_every == 0 and self.step < self.cfg.max_steps:
                self.save()
            if self.on_step:
                self.on_step(self, self.step, step_loss)
        if n:  # stopped between log rows: keep the steps it did run
            lr = self.scheduler.get_last_lr()[0]
            self._log(f"{self.step},{running / n:.5f},{lr:.6g},{(time.perf_counter() - t0) / n:.3f}")
        bar.close()
        self.save()
        for m in self.modules.values():
            m.eval()

    def _optimizer_step(self) -> float:
        """One optimiser step over ``grad_accum`` micro-batches; returns the mean loss."""
        accum = max(1, self.cfg.grad_accum)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(accum):
            loss = self.step_fn(self.step, micro) if accum > 1 else self.step_fn(self.step)
            scaled = loss / accum
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total += float(loss.detach())
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        if self.cfg.grad_clip and self.cfg.grad_clip_mode == "value":
            torch.nn.utils.clip_grad_value_(self.params, self.cfg.grad_clip)
        elif self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return total / accum
