"""Training and evaluation: ``Trainer.fit()`` yields one :class:`EpochResult` per epoch.

The loss is the original's: mean BCE + ``l2 * sum(x^2) / 2`` over the whole embedding table,
the aggregator weights and the ``ni:2`` attention weights. Its gradient is exact on the fast
path too: the L2 part is Adam's coupled ``weight_decay`` (the same gradient, ``l2 * x``, for
every row of the table at every step) and the data part reaches the optimizer as the
gradient of the few rows a batch touched (:class:`RowSparseAdam`), never as a densified
table-sized autograd result.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from . import protocol
from .config import RunConfig
from .data.prepare import PreparedData
from .metrics import Metrics, evaluate_scores
from .model import KNI
from .results import EpochResult, FitSummary
from .topk import TopKHook

log = logging.getLogger(__name__)

# Embedding rows gathered per evaluation step (repeats x examples x neighbourhood). On CPU,
# ~128k rows (64 MB, gathered into one reused buffer) measured fastest on bc; smaller steps
# pay per-call overhead (sampling, sorting columns) more often.
EVAL_ROWS_BUDGET = {"cpu": 1 << 17, "cuda": 1 << 22}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available (use device: auto or cpu)")
    return device


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed torch (CPU and CUDA); on CUDA also ask for deterministic kernels."""
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)


def tf_adam_eps(optimizer: torch.optim.Optimizer, eps: float) -> None:
    """Make PyTorch's Adam take TensorFlow's step.

    TF divides by ``sqrt(v_t) + eps`` after folding the bias corrections into the learning
    rate; PyTorch divides by ``sqrt(v_t / (1 - b2^t)) + eps``. They agree when PyTorch's eps is
    ``eps / sqrt(1 - b2^t)``. It matters here: rows a batch does not touch see only the L2
    gradient (~1e-7), the same order as eps.
    """
    for group in optimizer.param_groups:
        state = optimizer.state.get(group["params"][0], {})
        step = int(state["step"]) + 1 if "step" in state else 1
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
        table.grad = torch.zeros_like(table)
        fused = table.device.type in ("cpu", "cuda")
        self.adam = torch.optim.Adam([table], lr=lr, eps=eps, weight_decay=l2, fused=fused)

    def step(self, ids: torch.Tensor, row_grad: torch.Tensor) -> None:
        grad = self.table.grad
        grad.index_add_(0, ids, row_grad)
        grad[0].zero_()                     # padding stays a fixed zero vector
        tf_adam_eps(self.adam, self.eps)
        self.adam.step()
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
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint else None
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
        self.rng = np.random.default_rng(cfg.seed)
        self.splits = {name: torch.from_numpy(getattr(data, name)).to(self.device)
                       for name in ("train", "valid", "test")}
        self.summary: FitSummary | None = None

    # -- one epoch ------------------------------------------------------------------------
    def train_epoch(self) -> float:
        """One pass over the shuffled training set; returns mean BCE + the L2 term at the end
        (evaluating the table-wide L2 sum at every step would cost a pass over the table)."""
        model, t = self.model, self.cfg.train
        model.train()
        train = self.splits["train"]
        order = torch.from_numpy(self.rng.permutation(len(train))).to(self.device)
        total, n_batches = 0.0, 0
        steps = -(-len(train) // t.batch_size)
        for start in range(0, len(train), t.batch_size):
            batch = train[order[start:start + t.batch_size]]
            logits = model(batch[:, 0], batch[:, 1])[0]
            loss = F.binary_cross_entropy_with_logits(logits, batch[:, 2].float())
            if self.dense_opt is not None:
                self.dense_opt.zero_grad(set_to_none=True)
            loss.backward()
            ids, leaf = model.last_rows
            self.table_opt.step(ids, leaf.grad)
            if self.dense_opt is not None:
                tf_adam_eps(self.dense_opt, t.adam_eps)
                self.dense_opt.step()
            total += loss.detach()
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
        support = sum(math.prod(model.hops[:k + 1]) for k in range(len(model.hops)))
        budget = EVAL_ROWS_BUDGET.get(self.device.type, 1 << 16)
        chunk = max(1, min(self.cfg.eval.batch_size, budget // (repeats * 2 * support)))
        scores = []
        steps = -(-len(pairs) // chunk)
        for start in range(0, len(pairs), chunk):
            batch = pairs[start:start + chunk]
            scores.append(model.predict(batch[:, 0], batch[:, 1], repeats, generator))
            if phase is not None and self.progress is not None:
                self.progress(phase, start // chunk + 1, steps)
        return torch.cat(scores).cpu().numpy() if scores else np.zeros(0)

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
            loss = self.train_epoch()
            t1 = time.perf_counter()
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
        """Write the checkpoint atomically: into a new file beside ``path``, synced, then renamed
        over it. A failed write (a full disk) leaves the previous checkpoint whole and no
        partial file behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies, as for torch.save
            with os.fdopen(fd, "wb") as f:
                torch.save({"config": self.cfg.to_dict(), "model": self.model.state_dict()}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def should_stop(history: list[EpochResult], split: str, patience: int) -> bool:
    """The original rule (:func:`kni_core.protocol.should_stop`) on ``split``'s metrics."""
    return protocol.should_stop([r.metric(split, "auc") for r in history],
                                [r.metric(split, "logloss") for r in history], patience)


def fit(cfg: RunConfig, data: PreparedData, **kwargs) -> Iterator[EpochResult]:
    """Convenience: ``for epoch in fit(cfg, data): ...``."""
    yield from Trainer(cfg, data, **kwargs).fit()
