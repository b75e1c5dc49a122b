"""Cosine LR with linear warm-up, and the linear batch-size scaling of the published LR."""

from __future__ import annotations

import math

import pytest

from training.engine.schedule import CosineWarmup, scaled_lr


def test_scaled_lr_from_0_06_at_2048():
    assert scaled_lr(2048) == pytest.approx(0.06)
    assert scaled_lr(32) == pytest.approx(0.06 * 32 / 2048)  # P x K = 8 x 4 -> 0.0009375
    with pytest.raises(ValueError):
        scaled_lr(0)


def test_schedule_points():
    # 10 epochs x 10 steps, 1 warm-up epoch: warm-up 10 steps, cosine over T = 90 steps
    schedule = CosineWarmup.from_epochs(0.1, epochs=10, steps_per_epoch=10, warmup_epochs=1)
    assert (schedule.total_steps, schedule.warmup_steps) == (100, 10)
    assert schedule(0) == pytest.approx(0.0)                    # warm-up starts at 0
    assert schedule(5) == pytest.approx(0.05)                   # half-way up: 0.1 * 5 / 10
    assert schedule(10) == pytest.approx(0.1)                   # end of warm-up = base LR
    assert schedule(55) == pytest.approx(0.05)                  # t = 45 of 90: (1 + cos(pi/2)) / 2
    assert schedule(40) == pytest.approx(0.1 * (1 + math.cos(math.pi / 3)) / 2)  # t = 30: 0.075
    assert schedule(100) == pytest.approx(0.0, abs=1e-12)       # end
    assert schedule(150) == pytest.approx(0.0, abs=1e-12)       # past the end: stays at eta_min


def test_schedule_is_monotonic_up_then_down():
    schedule = CosineWarmup.from_epochs(0.06, epochs=5, steps_per_epoch=7, warmup_epochs=1)
    values = [schedule(s) for s in range(schedule.total_steps + 1)]
    peak = values.index(max(values))
    assert peak == schedule.warmup_steps
    assert all(a <= b for a, b in zip(values[:peak], values[1:peak + 1]))
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1:]))


def test_all_warmup_falls_back_to_constant():
    schedule = CosineWarmup.from_epochs(0.1, epochs=2, steps_per_epoch=5, warmup_epochs=2)
    assert schedule(10) == pytest.approx(0.1)
