"""Resource use of the current process, as a run process records it about itself: peak
resident memory, torch's CPU threads, the GPU's name and the peak GPU memory torch allocated.

Nothing here imports torch: it is read only when the process has already imported it (a run
process has), so the numbers describe the training process and cost nothing to sample.
"""

from __future__ import annotations

import sys
from typing import Any


def peak_rss_mb() -> float | None:
    """The process's peak resident set size in MiB (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:                      # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)   # bytes on macOS, KiB elsewhere


def sample(device: str | None = None) -> dict[str, Any]:
    """``peak_rss_mb``, ``cpu_threads``, ``gpu_name`` and ``peak_gpu_mb`` (None when unknown)."""
    out: dict[str, Any] = {"peak_rss_mb": peak_rss_mb(), "cpu_threads": None, "gpu_name": None,
                           "peak_gpu_mb": None}
    torch = sys.modules.get("torch")
    if torch is None:
        return out
    out["cpu_threads"] = torch.get_num_threads()
    if device and device.startswith("cuda"):
        try:
            index = torch.device(device.split()[0]).index
            index = torch.cuda.current_device() if index is None else index
            out["gpu_name"] = torch.cuda.get_device_name(index)
            out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(index) / 2 ** 20, 1)
        except Exception:                    # noqa: BLE001 - resources are informative only
            pass
    return out


def mib(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:.0f} MiB" if x < 1024 else f"{x / 1024:.1f} GiB"


def resources_text(run: Any) -> str | None:
    """``peak RSS 1.2 GiB, 4 CPU threads, GPU NVIDIA H100 (peak 3.1 GiB allocated by torch)`` from a
    stored run's columns (None when the run recorded none)."""
    if run.peak_rss_mb is None and run.cpu_threads is None and run.gpu_name is None:
        return None
    parts = [f"peak RSS {mib(run.peak_rss_mb)}"]
    if run.cpu_threads is not None:
        parts.append(f"{run.cpu_threads} CPU thread{'s' if run.cpu_threads != 1 else ''}")
    if run.gpu_name:
        parts.append(f"GPU {run.gpu_name} (peak {mib(run.peak_gpu_mb)} allocated by torch)")
    return ", ".join(parts)
