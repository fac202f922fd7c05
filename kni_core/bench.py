"""Timing of training and evaluation, with peak memory, for ``kni bench``.

Two modes. Full epochs (the default): the median seconds of a training epoch and of a full
evaluation (valid + test, ``n_eval`` sampled passes each) after a warm-up round. ``steps=N``:
N training steps and N evaluation batches are timed and extrapolated to an epoch, so data of
Movie-20M's size is measured in seconds rather than hours of full epochs.

On CUDA every timed section ends with a device synchronisation (kernels run asynchronously),
and the peak of the GPU's allocator is reported with the GPU's name.
"""

from __future__ import annotations

import math
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


def benchmark(cfg: RunConfig, repeats: int = 3, warmup: int = 1, steps: int | None = None) -> dict:
    """Seconds of training and evaluation on ``cfg``'s data and device (see the module doc)."""
    t0 = time.perf_counter()
    data = prepare(cfg)
    prepare_seconds = time.perf_counter() - t0
    trainer = Trainer(cfg, data, keep_best=False)
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = {
        "dataset": cfg.dataset.name or cfg.dataset.path, "device": str(device),
        "threads": torch.get_num_threads(), "train_rows": len(data.train),
        "eval_rows": len(data.valid) + len(data.test), "n_eval": cfg.eval.n_eval,
        "prepare_seconds": round(prepare_seconds, 2), "prepared_from_cache": data.from_cache,
    }
    result.update(_steps(trainer, steps) if steps else _epochs(trainer, repeats, warmup))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name(device)
    return result


def _epochs(trainer: Trainer, repeats: int, warmup: int) -> dict:
    device = trainer.device
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
    train_s = statistics.median(train_times)
    return {"train_epoch_seconds": _sig(train_s), "eval_seconds": _sig(statistics.median(eval_times)),
            "train_steps_per_second": round(_batches(trainer) / train_s, 1)}


def _sig(seconds: float) -> float:
    """Three significant digits: a fixed number of decimals would print a floor model's
    sub-millisecond epoch as 0."""
    return float(f"{seconds:.3g}")


def _batches(trainer: Trainer) -> int:
    return trainer.batches_per_epoch()


def _steps(trainer: Trainer, steps: int) -> dict:
    """Time ``steps`` training steps and ``steps`` evaluation batches after a short warm-up."""
    device, batch_size = trainer.device, trainer.cfg.train.batch_size
    train = trainer.splits["train"]
    warm = min(steps, 5)
    needed = (warm + steps) * batch_size
    order = torch.cat([trainer.shuffled_order() for _ in range(math.ceil(needed / len(train)))])
    batches = [train[order[i * batch_size:(i + 1) * batch_size]] for i in range(warm + steps)]
    for batch in batches[:warm]:
        trainer.train_step(batch)
    _sync(device)
    t0 = time.perf_counter()
    for batch in batches[warm:]:
        trainer.train_step(batch)
    _sync(device)
    train_step = (time.perf_counter() - t0) / steps

    chunk = trainer.eval_chunk()
    need = steps * chunk
    pairs = torch.cat([trainer.splits["valid"][:need], trainer.splits["test"][:need]])
    trainer.predict(pairs[:chunk * 2], seed=1)
    n_batches = min(steps, math.ceil(len(pairs) / chunk))
    _sync(device)
    t0 = time.perf_counter()
    trainer.predict(pairs[:n_batches * chunk], seed=0)
    _sync(device)
    eval_step = (time.perf_counter() - t0) / n_batches
    eval_batches = sum(math.ceil(len(trainer.splits[s]) / chunk) for s in ("valid", "test"))
    return {"steps": steps, "train_step_seconds": _sig(train_step),
            "train_steps_per_second": round(1 / train_step, 1),
            "train_epoch_seconds_estimate": round(train_step * _batches(trainer), 2),
            "eval_batches": n_batches, "eval_batch_examples": chunk, "eval_step_seconds": _sig(eval_step),
            "eval_seconds_estimate": round(eval_step * eval_batches, 2)}
