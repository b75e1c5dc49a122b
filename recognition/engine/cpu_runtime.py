"""Process-wide settings of the CPU math runtimes, applied when the engine is imported.

Paddle's CPU kernels run on Intel OpenMP, whose threads spin for 200 ms after every parallel region by default.
A worker that answers a photo and then waits keeps most of a core busy doing nothing, and takes it from what runs
beside it on a small machine: the web process, PostgreSQL, other workers, the photo's own RootSIFT thread.
A 1 ms block time kept the latency (0.95-1.09x, noise) and halved the CPU per photo (0.49-0.53x) when photos
arrive with gaps (``bench/paddle_blocktime.py``); 0 ms put a thread wake-up on every layer (1.36x the time).
The runtime reads the variable at its first parallel region, so setting it here, before any model runs, is enough.
An operator's own ``KMP_BLOCKTIME`` is kept.
"""

from __future__ import annotations

import os

PADDLE_BLOCKTIME_MS = 1


def quiet_idle_threads() -> None:
    """Let OpenMP threads sleep soon after an inference, unless the environment already says otherwise."""
    os.environ.setdefault("KMP_BLOCKTIME", str(PADDLE_BLOCKTIME_MS))


__all__ = ["PADDLE_BLOCKTIME_MS", "quiet_idle_threads"]
