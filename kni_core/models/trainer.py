"""Training of the baselines: :class:`ModelTrainer` is the :class:`~kni_core.train.Trainer` with
a dense Adam over all parameters (TF1's Adam updates every row, as the authors' code runs it)
and one deterministic scoring pass per example; ``fit()``, early stopping, selection, the
top-N hook and the records are the Trainer's own. ``Trainer(cfg, data)`` returns one when
``model.name`` is not ``kni``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig
from ..data.prepare import PreparedData
from ..train import ProgressHook, Trainer, resolve_device, seed_everything, tf_adam_eps
from . import build_model


class ModelTrainer(Trainer):
    def __init__(self, cfg: RunConfig, data: PreparedData, device: str | torch.device | None = None,
                 checkpoint: str | Path | None = None, progress: ProgressHook | None = None):
        self.cfg = cfg
        self.progress = progress
        self.phase = "setup"              # then training / evaluation (Trainer.fit): OOM messages
        self.data = data
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        seed_everything(cfg.seed, self.device)
        self.model = build_model(cfg, data).to(self.device)
        t = cfg.train
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr, eps=t.adam_eps)
        self.adam_steps = 0               # counted on the host (see kni_core.train.tf_adam_eps)
        self.rng = np.random.default_rng(cfg.seed)
        self.splits = {name: torch.from_numpy(getattr(data, name)).to(self.device)
                       for name in ("train", "valid", "test")}
        self.summary = None

    def train_epoch(self) -> float:
        """One pass over the shuffled training set; returns the mean training objective."""
        model, t = self.model, self.cfg.train
        model.train()
        train = self.splits["train"]
        n = len(train)
        end = n - n % t.batch_size if model.drop_last else n
        order = torch.from_numpy(self.rng.permutation(n)).to(self.device)
        total, steps = 0.0, 0
        n_steps = -(-end // t.batch_size)
        for start in range(0, end, t.batch_size):
            batch = train[order[start:start + t.batch_size]]
            loss = model.loss(batch[:, 0], batch[:, 1], batch[:, 2])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.adam_steps += 1
            tf_adam_eps(self.optimizer, t.adam_eps, self.adam_steps)
            self.optimizer.step()
            total += loss.detach()
            steps += 1
            if self.progress is not None:
                self.progress("train", steps, n_steps)
        return float(total) / max(steps, 1)

    @torch.no_grad()
    def predict(self, pairs: torch.Tensor, repeats: int | None = None, seed: int = 0,
                phase: str | None = None) -> np.ndarray:
        """Scores of ``pairs``; one pass (the baselines do not sample, so ``repeats`` is moot)."""
        if self.model.stochastic:
            raise NotImplementedError("a sampling baseline needs repeated passes")
        step = self.cfg.eval.batch_size
        n_steps = -(-len(pairs) // step)
        scores = []
        for k, s in enumerate(range(0, len(pairs), step), start=1):
            scores.append(self.model.scores(pairs[s:s + step, 0], pairs[s:s + step, 1]))
            if phase is not None and self.progress is not None:
                self.progress(phase, k, n_steps)
        return torch.cat(scores).cpu().numpy() if scores else np.zeros(0)

    @torch.no_grad()
    def score_matrix(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(U, I)`` probabilities of every user with every item (the top-N ranking)."""
        self.model.eval()
        items_t = torch.from_numpy(np.asarray(items, dtype=np.int64)).to(self.device)
        return np.stack([self.model.score_matrix(int(u), items_t).cpu().numpy() for u in users]) \
            if len(users) else np.zeros((0, len(items)), dtype=np.float32)

    def effective_n_eval(self, n_eval: int) -> int:
        return n_eval if self.model.stochastic else 1
