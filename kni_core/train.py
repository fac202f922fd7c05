"""Training and evaluation of every model: ``Trainer.fit()`` yields one :class:`EpochResult`
per epoch.

The loop, early stopping, selection, the top-N hook, checkpoints, progress and the phase an
out-of-memory error names are shared; what differs between models is asked of the model
(:class:`kni_core.models.base.Recommender`): its loss and optimizer, the shuffle, whether the
last batch is dropped, how many passes a score averages and how evaluation is chunked.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from . import models, protocol
from .config import RunConfig
from .data.prepare import PreparedData, check_prepared_for
from .errors import KniError
from .metrics import Metrics, evaluate_scores
from .models.base import tf_adam_eps  # noqa: F401  (re-exported)
from .models.kni import RowSparseAdam  # noqa: F401  (re-exported)
from .results import EpochResult, FitSummary
from .strata import strata
from .topk import TopKHook, user_matrix

log = logging.getLogger(__name__)

# Embedding rows gathered per evaluation step (repeats x examples x neighbourhood). On CPU,
# ~128k rows (64 MB, gathered into one reused buffer) measured fastest on bc; smaller steps
# pay per-call overhead (sampling, sorting columns) more often.
EVAL_ROWS_BUDGET = {"cpu": 1 << 17, "cuda": 1 << 22}


#: The setting to lower when the device runs out of memory, by the phase of the run (during
#: setup: the model's ``setup_memory``).
MEMORY_SETTINGS = {"training": ("train.batch_size",), "evaluation": ("eval.batch_size", "eval.n_eval")}


class OutOfMemory(KniError):
    """The device ran out of memory; the message names the setting to lower."""


class Diverged(KniError):
    """The training diverged: a loss or a prediction that is not finite, or a loss orders of
    magnitude above what predicting at chance costs. The run ends failed, its epochs kept."""


#: A chance predictor's mean BCE (ln 2); an epoch's loss this many times above it has exploded.
CHANCE_LOSS, EXPLODED = math.log(2), 1000.0


def out_of_memory(cfg: RunConfig, phase: str, device: str, error: BaseException) -> OutOfMemory:
    """``error`` (``torch.cuda.OutOfMemoryError``) as a message a user can act on."""
    keys = models.get(cfg.model.name).setup_memory if phase == "setup" else \
        MEMORY_SETTINGS.get(phase, MEMORY_SETTINGS["training"])
    now = {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in keys}
    first, value = keys[0], now[keys[0]]
    hint = f", e.g. --set {first}={max(1, value // 2)}" if isinstance(value, int) and value > 1 else ""
    settings = " or ".join(f"{k} (now {v})" for k, v in now.items())
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return OutOfMemory(f"{device} ran out of memory during {phase}: lower {settings}{hint}. ({detail})")


_MALLOC_TUNED = False


def keep_freed_memory() -> None:
    """Let glibc keep freed heap memory for the next step instead of giving it back.

    A CPU training step allocates and frees a few MB of temporaries; by default glibc trims
    the freed top of the heap and maps it afresh next step: ~50-100k page faults per bc
    epoch, 0.1-0.25 s of kernel time. With a fixed mmap threshold (32 MB, glibc's maximum:
    larger blocks, allocated once, are still mapped) and no trimming below 1 GB, the
    temporaries reuse the same pages. Process-wide, once; a no-op without glibc's mallopt.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3            # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available (use device: auto or cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                           "device(s)")
    return device


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed torch (CPU and CUDA); on CUDA also ask for deterministic kernels.

    On CUDA that makes the table's ``index_add_`` sort instead of racing atomics (same seed,
    same numbers) and needs cuBLAS's fixed workspace, set before cuBLAS starts. TF32 stays
    off (PyTorch's default for matmuls): it rounds the interaction's dot products to a 10-bit
    mantissa, which would move the numbers away from the CPU's."""
    torch.manual_seed(seed)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.manual_seed_all(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cuda.matmul.allow_tf32 = False


#: ``progress(phase, done, total)``: phase ``train`` (batches), ``valid`` or ``test``
#: (evaluation chunks); called after every step, so it must be cheap (callers throttle).
ProgressHook = Callable[[str, int, int], None]


class Trainer:
    """Trains one configuration on its prepared data (:meth:`fit`).

    The trainer draws from torch generators of its own (weights, dropout, neighbour sampling),
    swapped in around its steps: two trainers in one process, or the caller's own draws between
    epochs, change neither's numbers. After :meth:`fit` the model holds the weights of the
    selected epoch (``summary.best``), a copy of which is kept while training; ``keep_best=False``
    saves that copy (the model then ends with the last epoch's weights, unless top-N needed the
    selected ones). On CUDA, seeding also turns on ``torch.use_deterministic_algorithms``, which
    is process-wide."""

    def __init__(self, cfg: RunConfig, data: PreparedData, device: str | torch.device | None = None,
                 checkpoint: str | Path | None = None, progress: ProgressHook | None = None,
                 keep_best: bool = True):
        self.cfg = cfg = cfg.validate()
        check_prepared_for(cfg, data)
        self.progress = progress
        self.data = data
        self.phase = "setup"              # then training / evaluation: what ran out of memory, if the device does
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.keep_best = keep_best
        if self.device.type == "cpu":
            keep_freed_memory()
        self.rng_states: dict[str, torch.Tensor | None] = {}
        with self._forked_rng():
            seed_everything(cfg.seed, self.device)
            self.model = models.build_model(cfg, data).to(self.device)
            self._keep_rng_states()
        self.optimizer = self.model.optimizer(cfg.train)
        # The shuffle: numpy's permutation (the numbers every CPU run so far has produced); on a
        # GPU, for a model that asks for it, a seeded torch generator there (never copied over).
        self.rng = np.random.default_rng(cfg.seed)
        self.shuffle_generator = (torch.Generator(device=self.device).manual_seed(cfg.seed)
                                  if self.model.shuffle_on_device and self.device.type != "cpu" else None)
        self.splits = {name: torch.from_numpy(getattr(data, name)).to(self.device)
                       for name in ("train", "valid", "test")}
        self.summary: FitSummary | None = None
        self.last_scores: dict[str, np.ndarray] = {}      # each split's latest predictions (for the strata)
        # fit's progress, what a last-epoch state saves (kni_core.resume)
        self.history: list[EpochResult] = []
        self.best: EpochResult | None = None
        self.best_state: dict[str, torch.Tensor] | None = None   # the selected epoch's weights, when kept
        self.topk_hook: TopKHook | None = None

    # -- the trainer's own generators -------------------------------------------------------
    def _forked_rng(self):
        """The process's torch generators (CPU, this CUDA device) saved now and put back after."""
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices)

    def _keep_rng_states(self) -> None:
        self.rng_states = {"torch": torch.get_rng_state(),
                           "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """Inside: the torch generators hold this trainer's states (training draws from them)."""
        with self._forked_rng():
            torch.set_rng_state(self.rng_states["torch"])
            if self.rng_states["cuda"] is not None:
                torch.cuda.set_rng_state(self.rng_states["cuda"], self.device)
            try:
                yield
            finally:
                self._keep_rng_states()

    # -- one epoch ------------------------------------------------------------------------
    def shuffled_order(self) -> torch.Tensor:
        """A fresh permutation of the training rows, on the device."""
        n = len(self.splits["train"])
        if self.shuffle_generator is None:
            return torch.from_numpy(self.rng.permutation(n)).to(self.device)
        return torch.randperm(n, generator=self.shuffle_generator, device=self.device)

    def batches_per_epoch(self) -> int:
        n, size = len(self.splits["train"]), self.cfg.train.batch_size
        return n // size if self.model.drop_last else -(-n // size)

    def train_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimizer step on ``batch`` (rows of user, item, label). Returns the batch's loss
        as a tensor, not read back: on a GPU nothing here waits for the device."""
        model = self.model
        model.train()
        loss = model.loss(batch[:, 0], batch[:, 1], batch[:, 2])
        self.optimizer.step(loss)
        return loss.detach()

    def train_epoch(self) -> float:
        """One pass over the shuffled training set; returns the mean batch loss plus the model's
        :meth:`~kni_core.models.base.Recommender.epoch_penalty` (KNI's L2 term)."""
        model, t = self.model, self.cfg.train
        model.train()
        train = self.splits["train"]
        order = self.shuffled_order()
        total, n_batches, losses = 0.0, 0, []
        steps = self.batches_per_epoch()
        with self.own_rng():
            for start in range(0, steps * t.batch_size, t.batch_size):
                loss = self.train_step(train[order[start:start + t.batch_size]])
                total += loss
                losses.append(loss)            # read back only when the epoch's mean is not finite
                n_batches += 1
                if self.progress is not None:
                    self.progress("train", n_batches, steps)
        mean = float(total) / max(n_batches, 1) + model.epoch_penalty(t.l2)
        if not math.isfinite(mean):
            bad = (~torch.isfinite(torch.stack(losses))).nonzero() if losses else []
            where = (f"at batch {int(bad[0, 0]) + 1} of {n_batches}" if len(bad)
                     else "at the end of the epoch (the regulariser of the weights is not finite)")
            raise Diverged(f"the loss diverged {where} (not finite){self._lower_it()}")
        if mean > EXPLODED * CHANCE_LOSS:
            raise Diverged(f"the loss exploded to {mean:.3g} (predicting at chance costs {CHANCE_LOSS:.3f})"
                           f"{self._lower_it()}")
        return mean

    def _lower_it(self) -> str:
        return f"; train.lr={self.cfg.train.lr:g} is likely too high: lower it"

    @torch.no_grad()
    def predict(self, pairs: torch.Tensor, repeats: int | None = None, seed: int = 0,
                phase: str | None = None) -> np.ndarray:
        """Mean score over ``repeats`` (default ``n_eval``) sampled passes, batched together
        (one pass for a model that does not sample)."""
        repeats = self.effective_n_eval(repeats or self.cfg.eval.n_eval)
        model = self.model
        model.eval()
        generator = torch.Generator(device=self.device).manual_seed(seed)
        chunk = self.eval_chunk(repeats)
        scores = []
        steps = -(-len(pairs) // chunk)
        for start in range(0, len(pairs), chunk):
            batch = pairs[start:start + chunk]
            scores.append(model.predict(batch[:, 0], batch[:, 1], repeats, generator))
            if phase is not None and self.progress is not None:
                self.progress(phase, start // chunk + 1, steps)
        return torch.cat(scores).cpu().numpy() if scores else np.zeros(0)

    def eval_chunk(self, repeats: int | None = None) -> int:
        """Examples per evaluation step: ``eval.batch_size``, fewer when the model says the
        rows ``repeats`` passes gather would exceed the device's budget."""
        repeats = repeats or self.cfg.eval.n_eval
        budget = EVAL_ROWS_BUDGET.get(self.device.type, 1 << 16)
        return self.model.eval_chunk(self.cfg.eval.batch_size, repeats, budget)

    def effective_n_eval(self, n_eval: int) -> int:
        """Passes averaged per score: ``n_eval``, 1 for a model that does not sample."""
        return self.model.passes(n_eval)

    def score_matrix(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(U, I)`` probabilities of every user with every item, one pass (a model that does
        not sample; see :func:`kni_core.topk.user_matrix`)."""
        return user_matrix(self.model, users, items, self.device)

    def evaluate(self, split: str, seed: int | None = None) -> Metrics:
        """AUC, logloss and accuracy on ``split``. ``seed`` (of the sampled passes) defaults to
        the one the selected epoch's evaluation used, so that after :meth:`fit` this returns
        ``summary.best``'s numbers (the first epoch's seed before any epoch was selected)."""
        if seed is None:
            seed = protocol.eval_seed(self.cfg.seed, self.best.epoch if self.best else 1, split)
        pairs = self.splits[split]
        if len(pairs) == 0:
            return Metrics(float("nan"), float("nan"), float("nan"))
        scores = self.predict(pairs, seed=seed, phase=split)
        if not np.isfinite(scores).all():
            raise Diverged(f"the {split} predictions are not finite (the model diverged){self._lower_it()}")
        self.last_scores[split] = scores
        return evaluate_scores(pairs[:, 2].cpu().numpy(), scores, self.data.threshold)

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, resume: dict | None = None) -> Iterator[EpochResult]:
        """Train, yielding one EpochResult per epoch; ``self.summary`` is set at the end (a loop
        left early leaves it None and the model with its latest weights). With ``resume`` (a
        :func:`kni_core.resume.capture` state of this configuration) training continues after
        the state's epoch, exactly as it would have gone on. A trainer fits once: build a new
        one to train again (a second fit would go on from the trained weights, as epoch 1)."""
        if self.history or self.summary is not None:
            raise KniError("this trainer has already trained; build a new Trainer to train again "
                           "(or pass fit(resume=...) a kni_core.resume state to continue one)")
        t, seed = self.cfg.train, self.cfg.seed
        self.topk_hook = topk = TopKHook(self)
        self.history, self.best = [], None
        start = 1
        if resume is not None:
            from .resume import restore
            start = restore(self, resume) + 1
        history = self.history
        stopped_early = bool(history) and should_stop(history, t.select_on, t.patience)   # ended, not recorded
        for epoch in range(start, t.epochs + 1) if not stopped_early else ():
            t0 = time.perf_counter()
            self.phase = "training"
            try:
                loss = self.train_epoch()
            except Diverged as e:
                raise Diverged(f"epoch {epoch}: {e}") from None
            t1 = time.perf_counter()
            self.phase = "evaluation"
            try:
                valid = self.evaluate("valid", seed=protocol.eval_seed(seed, epoch, "valid"))
                test = self.evaluate("test", seed=protocol.eval_seed(seed, epoch, "test"))
            except Diverged as e:
                raise Diverged(f"epoch {epoch}: {e}") from None
            result = EpochResult(seed, epoch, loss, valid.auc, valid.logloss, valid.acc,
                                 test.auc, test.logloss, test.acc, t1 - t0, time.perf_counter() - t1)
            result = topk.after_epoch(result)
            best = self.best
            if best is None or result.metric(t.select_on, "auc") > best.metric(t.select_on, "auc"):
                if "test" in self.last_scores:
                    result = dataclasses.replace(result, strata=strata(self.data, self.last_scores["test"],
                                                                       self.cfg.eval.strata))
                self.best = result
                self.best_state = self._copy_weights() if self.keep_best or topk.wants_weights(result) else None
                if self.checkpoint:
                    self.save(self.checkpoint)
            history.append(result)
            yield result
            if should_stop(history, t.select_on, t.patience):
                stopped_early = True
                log.info("early stop after epoch %d", epoch)
                break
        assert self.best is not None
        if self.best_state is not None and history and history[-1].epoch != self.best.epoch:
            self.model.load_state_dict(self.best_state)       # the selected epoch's weights
        elif self.keep_best and history and history[-1].epoch != self.best.epoch:
            log.warning("the selected epoch's weights were not in the resumed state: the model keeps the "
                        "last epoch's")
        self.best_state = None
        best = topk.finish(self.best)       # top-N at the selected epoch, with its weights
        self.summary = FitSummary(seed, best.epoch, best, len(history), stopped_early)

    def _copy_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def save(self, path: Path, before_replace: Callable[[], None] | None = None) -> None:
        """Write the checkpoint (config and weights) atomically (:func:`kni_core.checkpoint.write_atomically`):
        a failed write (a full disk) leaves the previous checkpoint whole and no partial file behind."""
        from .checkpoint import model_checkpoint, write_atomically
        write_atomically(path, model_checkpoint(self.cfg.to_dict(), self.model.state_dict(), self.data.sources),
                         before_replace)


def should_stop(history: list[EpochResult], split: str, patience: int) -> bool:
    """The original rule (:func:`kni_core.protocol.should_stop`) on ``split``'s metrics."""
    return protocol.should_stop([r.metric(split, "auc") for r in history],
                                [r.metric(split, "logloss") for r in history], patience)


def fit(cfg: RunConfig, data: PreparedData, **kwargs) -> Iterator[EpochResult]:
    """Convenience: ``for epoch in fit(cfg, data): ...``."""
    yield from Trainer(cfg, data, **kwargs).fit()
