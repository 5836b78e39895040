"""Parameter counts of the built-in trainer's models, without torch: what an IsoFLOP
study's N is when the spec does not list `modelSizes.parameters`. The formulas follow
the trainer's modules (`scalingstudy_trainer.tasks`); a test builds those modules and
checks every count, so a change there cannot drift silently."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BYTE_VOCAB = 256


def _option(options: Mapping[str, Any], camel: str, snake: str, default: Any) -> Any:
    value = options.get(camel, options.get(snake))
    return default if value is None or value == "" else value


def builtin_parameters(task: str, options: Mapping[str, Any], width: int) -> int | None:
    """The parameter count of the built-in task's model of this size; None for a task
    whose count is not known here (image classification, a custom trainer's task)."""
    w = width
    if task == "teacher-student":
        inputs = int(_option(options, "inputDim", "input_dim", 16))
        depth = int(_option(options, "studentDepth", "student_depth", 2))
        return inputs * w + w + (depth - 1) * (w * w + w) + w + 1
    if task != "char-lm":
        return None
    tokens = _option(options, "tokens", "tokens", "")
    vocab = int(_option(options, "vocabSize", "vocab_size", BYTE_VOCAB)) if tokens else BYTE_VOCAB
    if _option(options, "model", "model", "transformer") == "lstm":
        layers = int(_option(options, "lstmLayers", "lstm_layers", 2))
        return vocab * w + layers * (8 * w * w + 8 * w) + w * vocab + vocab
    context = int(_option(options, "context", "context", 128))
    layers = max(2, round(w / 64))
    # Token and position embeddings (the output head is tied to the token embedding),
    # per block 2 norms, qkv and projection without bias, a 4x MLP; the final norm.
    return vocab * w + context * w + layers * (12 * w * w + 9 * w) + 2 * w
