"""A trial's checkpoint state: what `Trainer.state` saves and `Trainer.restore` reads."""

from __future__ import annotations

from typing import Any

#: The trainer (`loop.Trainer`): typed loosely, as naming its class here would make the
#: two modules import each other.
Trainer = Any


def trainer_state(self: Trainer) -> dict[str, Any]:
    """Everything a resumed trial needs to end, and report, as the uninterrupted one:
    besides weights, optimiser and early stopping, the micro-batch cut an out-of-memory
    forced (a resume on a card where the batch fits keeps it: a BatchNorm model's
    normalisation batch, and the result's word that it changed) and the first step
    whose loss was not finite."""
    return {
        "step": self.step,
        "best": self.best,
        "best_step": self.best_step,
        "stale": self.stale,
        "reference": self.reference,
        "train_sum": float(self.train_sum),
        "train_n": self.train_n,
        "chunks": self.chunks,
        "normalisation_batch_changed": self.normalisation_batch_changed,
        "diverged_at": int(self.diverged_at),
        "model": self.model.state_dict(),
        "optimizer": self.optimizer.state_dict(),
        "best_state": self.best_state,
    }


def restore_trainer(self: Trainer, state: dict[str, Any]) -> None:
    """A checkpoint's state back into the trainer (older checkpoints lack the newer keys)."""
    self.model.load_state_dict(state["model"])
    self.optimizer.load_state_dict(state["optimizer"])
    self.step, self.best_step, self.stale = state["step"], state["best_step"], state["stale"]
    self.best = float(state["best"])
    self.reference = float(state.get("reference", self.best))
    self.train_sum.fill_(float(state["train_sum"]))
    self.train_n = int(state["train_n"])
    self.chunks = max(1, min(int(state.get("chunks", 1)), self.most_chunks))
    self.normalisation_batch_changed |= bool(state.get("normalisation_batch_changed"))
    self.diverged_at.fill_(int(state.get("diverged_at", -1)))
    best = state["best_state"]
    self.best_state = (
        None if best is None else {k: v.to(self.runtime.device) for k, v in best.items()}
    )
