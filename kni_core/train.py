"""Training and evaluation: ``Trainer.fit()`` yields one :class:`EpochResult` per epoch.

The loss is the original's: mean BCE + ``l2 * sum(x^2) / 2`` over the whole embedding table,
the aggregator weights and the ``ni:2`` attention weights. Its gradient is exact on the fast
path too: the L2 part is Adam's coupled ``weight_decay`` (the same gradient, ``l2 * x``, for
every row of the table at every step) and the data part reaches the optimizer as the
gradient of the few rows a batch touched (:class:`RowSparseAdam`), never as a densified
table-sized autograd result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from . import protocol
from .config import RunConfig
from .data.prepare import PreparedData
from .errors import KniError
from .metrics import Metrics, evaluate_scores
from .model import KNI
from .results import EpochResult, FitSummary
from .topk import TopKHook

log = logging.getLogger(__name__)

# Embedding rows gathered per evaluation step (repeats x examples x neighbourhood). On CPU,
# ~128k rows (64 MB, gathered into one reused buffer) measured fastest on bc; smaller steps
# pay per-call overhead (sampling, sorting columns) more often.
EVAL_ROWS_BUDGET = {"cpu": 1 << 17, "cuda": 1 << 22}


#: The setting to lower when the device runs out of memory, by the phase of the run.
MEMORY_SETTINGS = {"setup": ("model.max_degree", "model.hidden"), "training": ("train.batch_size",),
                   "evaluation": ("eval.batch_size", "eval.n_eval")}


class OutOfMemory(KniError):
    """The device ran out of memory; the message names the setting to lower."""


def out_of_memory(cfg: RunConfig, phase: str, device: str, error: BaseException) -> OutOfMemory:
    """``error`` (``torch.cuda.OutOfMemoryError``) as a message a user can act on."""
    keys = MEMORY_SETTINGS.get(phase, MEMORY_SETTINGS["training"])
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


def tf_adam_eps(optimizer: torch.optim.Optimizer, eps: float, step: int) -> None:
    """Make PyTorch's Adam take TensorFlow's step number ``step`` (1 for the first).

    TF divides by ``sqrt(v_t) + eps`` after folding the bias corrections into the learning
    rate; PyTorch divides by ``sqrt(v_t / (1 - b2^t)) + eps``. They agree when PyTorch's eps is
    ``eps / sqrt(1 - b2^t)``. It matters here: rows a batch does not touch see only the L2
    gradient (~1e-7), the same order as eps. The caller counts the steps on the host: reading
    the optimizer's own ``state["step"]`` would wait for the GPU at every step (fused Adam
    keeps it there).
    """
    for group in optimizer.param_groups:
        group["eps"] = eps / math.sqrt(1.0 - group["betas"][1] ** step)


class RowSparseAdam:
    """Adam over the embedding table fed with only the rows a batch touched.

    The table's ``.grad`` is a persistent zero buffer: the gradients of the gathered rows
    are added in (repeated ids accumulate), one fused Adam step runs over the whole table
    (``weight_decay = l2`` is the exact gradient of the L2 term for every row), and the rows
    are zeroed again. The update is the dense one, without a table-sized autograd backward.
    """

    def __init__(self, table: torch.nn.Parameter, lr: float, eps: float, l2: float):
        self.table = table
        self.eps = eps
        self.steps = 0
        table.grad = torch.zeros_like(table)
        fused = table.device.type in ("cpu", "cuda")
        self.adam = torch.optim.Adam([table], lr=lr, eps=eps, weight_decay=l2, fused=fused)

    def step(self, rows: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """``rows``: ``(ids, gradient of those rows)`` pairs, added in order (repeated ids
        accumulate, as one ``index_add_`` over the concatenation would)."""
        grad = self.table.grad
        for ids, row_grad in rows:
            grad.index_add_(0, ids, row_grad)
        grad[0].zero_()                     # padding stays a fixed zero vector
        self.steps += 1
        tf_adam_eps(self.adam, self.eps, self.steps)
        self.adam.step()
        for ids, _ in rows:
            grad.index_fill_(0, ids, 0.0)

    def state_dict(self) -> dict:
        return self.adam.state_dict()


#: ``progress(phase, done, total)``: phase ``train`` (batches), ``valid`` or ``test``
#: (evaluation chunks); called after every step, so it must be cheap (callers throttle).
ProgressHook = Callable[[str, int, int], None]


class Trainer:
    def __new__(cls, cfg: RunConfig, *args, **kwargs):
        # model.name other than kni: the baselines' trainer (kni_core.models.trainer), same fit()
        if cls is Trainer and getattr(cfg.model, "name", "kni") != "kni":
            from .models.trainer import ModelTrainer
            return super().__new__(ModelTrainer)
        return super().__new__(cls)

    def __init__(self, cfg: RunConfig, data: PreparedData, device: str | torch.device | None = None,
                 checkpoint: str | Path | None = None, progress: ProgressHook | None = None):
        self.cfg = cfg
        self.progress = progress
        self.data = data
        self.phase = "setup"              # then training / evaluation: what ran out of memory, if the device does
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        if self.device.type == "cpu":
            keep_freed_memory()
        seed_everything(cfg.seed, self.device)
        adjacency = torch.from_numpy(data.adjacency).to(self.device)
        self.model = KNI(data.n_entity, adjacency, cfg.model).to(self.device)
        self.model.row_leaf = True
        t = cfg.train
        self.table_opt = RowSparseAdam(self.model.embedding, t.lr, t.adam_eps, t.l2)
        weights = self.model.l2_parameters()
        ids = {id(p) for p in weights} | {id(self.model.embedding)}
        biases = [p for p in self.model.parameters() if id(p) not in ids]
        groups = [g for g in ({"params": weights, "weight_decay": t.l2}, {"params": biases, "weight_decay": 0.0})
                  if g["params"]]
        self.dense_opt = torch.optim.Adam(groups, lr=t.lr, eps=t.adam_eps) if groups else None
        self.dense_steps = 0
        # The shuffle: numpy's permutation on CPU (the numbers every CPU run so far has
        # produced), a seeded torch generator on a GPU (drawn there, never copied over).
        self.rng = np.random.default_rng(cfg.seed)
        self.shuffle_generator = (torch.Generator(device=self.device).manual_seed(cfg.seed)
                                  if self.device.type != "cpu" else None)
        self.splits = {name: torch.from_numpy(getattr(data, name)).to(self.device)
                       for name in ("train", "valid", "test")}
        self.summary: FitSummary | None = None

    # -- one epoch ------------------------------------------------------------------------
    def shuffled_order(self) -> torch.Tensor:
        """A fresh permutation of the training rows, on the device."""
        n = len(self.splits["train"])
        if self.shuffle_generator is None:
            return torch.from_numpy(self.rng.permutation(n))
        return torch.randperm(n, generator=self.shuffle_generator, device=self.device)

    def train_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimizer step on ``batch`` (rows of user, item, label). Returns the batch's mean
        BCE as a tensor, not read back: on a GPU nothing here waits for the device."""
        model, t = self.model, self.cfg.train
        model.train()
        logits = model(batch[:, 0], batch[:, 1])[0]
        loss = F.binary_cross_entropy_with_logits(logits, batch[:, 2].float())
        if self.dense_opt is not None:
            self.dense_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.table_opt.step([(ids, leaf.grad) for ids, leaf in model.last_rows])
        if self.dense_opt is not None:
            self.dense_steps += 1
            tf_adam_eps(self.dense_opt, t.adam_eps, self.dense_steps)
            self.dense_opt.step()
        return loss.detach()

    def train_epoch(self) -> float:
        """One pass over the shuffled training set; returns mean BCE + the L2 term at the end
        (evaluating the table-wide L2 sum at every step would cost a pass over the table)."""
        model, t = self.model, self.cfg.train
        model.train()
        train = self.splits["train"]
        order = self.shuffled_order()
        total, n_batches = 0.0, 0
        steps = -(-len(train) // t.batch_size)
        for start in range(0, len(train), t.batch_size):
            total += self.train_step(train[order[start:start + t.batch_size]])
            n_batches += 1
            if self.progress is not None:
                self.progress("train", n_batches, steps)
        penalty = t.l2 * model.l2_penalty().item() if t.l2 > 0 else 0.0
        return float(total) / max(n_batches, 1) + penalty

    @torch.no_grad()
    def predict(self, pairs: torch.Tensor, repeats: int | None = None, seed: int = 0,
                phase: str | None = None) -> np.ndarray:
        """Mean score over ``repeats`` (default ``n_eval``) sampled passes, batched together."""
        repeats = repeats or self.cfg.eval.n_eval
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
        """Examples per evaluation step: ``eval.batch_size``, fewer when the gathered rows of
        ``repeats`` passes would exceed the device's budget."""
        repeats = repeats or self.cfg.eval.n_eval
        hops = self.model.hops
        support = sum(math.prod(hops[:k + 1]) for k in range(len(hops)))
        budget = EVAL_ROWS_BUDGET.get(self.device.type, 1 << 16)
        return max(1, min(self.cfg.eval.batch_size, budget // (repeats * 2 * support)))

    def evaluate(self, split: str, seed: int = 0) -> Metrics:
        pairs = self.splits[split]
        if len(pairs) == 0:
            return Metrics(float("nan"), float("nan"), float("nan"))
        scores = self.predict(pairs, seed=seed, phase=split)
        return evaluate_scores(pairs[:, 2].cpu().numpy(), scores, self.data.threshold)

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> Iterator[EpochResult]:
        """Train, yielding one EpochResult per epoch; ``self.summary`` is set at the end."""
        t, seed = self.cfg.train, self.cfg.seed
        history: list[EpochResult] = []
        best: EpochResult | None = None
        stopped_early = False
        topk = TopKHook(self)
        for epoch in range(1, t.epochs + 1):
            t0 = time.perf_counter()
            self.phase = "training"
            loss = self.train_epoch()
            t1 = time.perf_counter()
            self.phase = "evaluation"
            valid = self.evaluate("valid", seed=seed * 100003 + epoch)
            test = self.evaluate("test", seed=seed * 100003 + epoch + 50000)
            result = EpochResult(seed, epoch, loss, valid.auc, valid.logloss, valid.acc,
                                 test.auc, test.logloss, test.acc, t1 - t0, time.perf_counter() - t1)
            result = topk.after_epoch(result)
            history.append(result)
            if best is None or result.metric(t.select_on, "auc") > best.metric(t.select_on, "auc"):
                best = result
                topk.new_best(result)
                if self.checkpoint:
                    self.save(self.checkpoint)
            yield result
            if should_stop(history, t.select_on, t.patience):
                stopped_early = True
                log.info("early stop after epoch %d", epoch)
                break
        assert best is not None
        best = topk.finish(best)            # top-N at the selected epoch, with its weights
        self.summary = FitSummary(seed, best.epoch, best, len(history), stopped_early)

    def save(self, path: Path) -> None:
        """Write the checkpoint (config and weights) atomically (:func:`kni_core.checkpoint.write_atomically`):
        a failed write (a full disk) leaves the previous checkpoint whole and no partial file behind."""
        from .checkpoint import write_atomically
        write_atomically(path, {"config": self.cfg.to_dict(), "model": self.model.state_dict()})


def should_stop(history: list[EpochResult], split: str, patience: int) -> bool:
    """The original rule (:func:`kni_core.protocol.should_stop`) on ``split``'s metrics."""
    return protocol.should_stop([r.metric(split, "auc") for r in history],
                                [r.metric(split, "logloss") for r in history], patience)


def fit(cfg: RunConfig, data: PreparedData, **kwargs) -> Iterator[EpochResult]:
    """Convenience: ``for epoch in fit(cfg, data): ...``."""
    yield from Trainer(cfg, data, **kwargs).fit()
