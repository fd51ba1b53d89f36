"""One background training job at a time, for the web page (the CLI calls ``fit`` directly).

The job runs ``fit`` in a daemon thread and keeps what a page needs to redraw itself at any
moment (status, progress, per-epoch history, errors), so a reloaded page re-attaches to it.
Stopping sets a flag that ``fit`` checks between steps.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from .config import TrainConfig
from .training import FitResult, TrainEvent, fit

log = logging.getLogger(__name__)


class JobBusy(RuntimeError):
    """A training job is already running."""


@dataclass
class JobState:
    config: TrainConfig
    status: str = "starting"  # starting, decoding, training, done, cancelled, failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    phase_message: str = ""
    train_loss: float | None = None
    device: str = ""
    history: list = field(default_factory=list)
    result: FitResult | None = None
    error: str = ""
    eta_s: float | None = None

    @property
    def running(self) -> bool:
        return self.status in ("starting", "decoding", "training")

    @property
    def fraction(self) -> float:
        """Share of the training steps done (decoding counts as none)."""
        if self.status == "done":
            return 1.0
        if self.status == "decoding" or not self.epochs or not self.steps:
            return 0.0
        return min(1.0, ((self.epoch - 1) * self.steps + self.step) / (self.epochs * self.steps))


class TrainingJobs:
    """Holds the current (or last) job; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state: JobState | None = None

    def start(self, config: TrainConfig) -> JobState:
        with self._lock:
            if self.state is not None and self.state.running:
                raise JobBusy("a training run is already in progress; stop it or wait for it")
            self._stop.clear()
            self.state = JobState(config=config, epochs=config.epochs)
            self._thread = threading.Thread(target=self._run, args=(self.state,),
                                            name="galaxy-training", daemon=True)
            self._thread.start()
            return self.state

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, state: JobState) -> None:
        train_started = [None]

        def on_event(event: TrainEvent):
            if event.kind == "decode":
                state.status, state.phase_message = "decoding", event.message
                state.step, state.steps = event.step, event.steps
            elif event.kind == "start":
                state.status, state.device = "training", event.metrics.get("device", "")
                state.steps, state.epoch, state.step = event.steps, event.epoch + 1, 0
                state.history = [dict(h) for h in event.metrics.get("history", [])]
                train_started[0] = (time.time(), event.epoch)
            elif event.kind == "step":
                state.epoch, state.step = event.epoch, event.step
                state.train_loss = event.metrics.get("train_loss")
                state.eta_s = self._eta(state, train_started[0])
            elif event.kind == "epoch":
                state.history.append(dict(event.metrics))

        try:
            state.result = fit(state.config, on_event=on_event, should_stop=self._stop.is_set)
            state.status = "cancelled" if state.result.cancelled else "done"
        except Exception as exc:  # shown on the page; the full trace goes to the log
            log.exception("training job failed")
            state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            state.finished = time.time()
            state.eta_s = 0.0 if state.status == "done" else None

    @staticmethod
    def _eta(state: JobState, started) -> float | None:
        if started is None:
            return None
        t0, first_epoch = started
        done_steps = (state.epoch - 1 - first_epoch) * state.steps + state.step
        left_steps = (state.epochs - state.epoch) * state.steps + (state.steps - state.step)
        if done_steps <= 0:
            return None
        return (time.time() - t0) / done_steps * left_steps
