"""Timing of training epochs and full evaluations, with peak memory, for ``kni bench``."""

from __future__ import annotations

import resource
import statistics
import time

import torch

from .config import RunConfig
from .data import prepare
from .train import Trainer


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(cfg: RunConfig, repeats: int = 3, warmup: int = 1) -> dict:
    """Median seconds of a training epoch and of a full evaluation (valid + test, ``n_eval``
    sampled passes each) after ``warmup`` untimed rounds."""
    data = prepare(cfg)
    trainer = Trainer(cfg, data)
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_times, eval_times = [], []
    for i in range(warmup + repeats):
        _sync(device)
        t0 = time.perf_counter()
        trainer.train_epoch()
        _sync(device)
        t1 = time.perf_counter()
        trainer.evaluate("valid", seed=i)
        trainer.evaluate("test", seed=i)
        _sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            train_times.append(t1 - t0)
            eval_times.append(t2 - t1)
    result = {
        "dataset": cfg.dataset.name or cfg.dataset.path, "device": str(device),
        "threads": torch.get_num_threads(), "train_rows": len(data.train),
        "eval_rows": len(data.valid) + len(data.test), "n_eval": cfg.eval.n_eval,
        "train_epoch_seconds": round(statistics.median(train_times), 3),
        "eval_seconds": round(statistics.median(eval_times), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name(device)
    return result
