"""Byte-level language modelling, the character-LM domain of Hestness et al. (2017).

The corpus is cut into sequences of ``context + 1`` bytes, put in a fixed order by
the study's data seed; the first sequences in that order are the validation set and
a subset of m bytes is the next m // (context + 1) sequences, so subsets are nested
and never touch validation. The loss is the mean cross-entropy in nats per byte.

Two model families share the size knob ``model_size`` = width: a decoder-only
transformer (pre-norm, causal flash attention, tied embeddings; depth grows with
width, one layer per 64 channels, at least 2) and an LSTM (fixed depth, width grows).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from pydantic import Field

from scalingstudy_trainer.corpus import DEFAULT_INCLUDE, Corpus, read_corpus
from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.tasks.base import Batch, Task, TaskOptions, register

VOCAB = 256


class CharLMOptions(TaskOptions):
    corpus: str = ""
    """A directory of text files (or one file); empty: the Python standard library source."""
    include: str = ""
    """Glob of the file names to read under ``corpus``; empty: every file (``*.py`` for the
    default corpus)."""
    model: Literal["transformer", "lstm"] = "transformer"
    context: int = Field(default=128, ge=8, le=8192)
    """Bytes of context per training sequence."""
    validation_bytes: int = Field(default=262_144, ge=1024, le=1 << 34)
    """Size of the held-out validation set."""
    lstm_layers: int = Field(default=2, ge=1, le=16)


def transformer_shape(width: int) -> tuple[int, int]:
    """(layers, heads) of the transformer of this width: heads of about 64 channels."""
    layers = max(2, round(width / 64))
    heads = max(1, round(width / 64))
    while width % heads:
        heads -= 1
    return layers, heads


class Block(torch.nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width, bias=False)
        self.proj = torch.nn.Linear(width, width, bias=False)
        self.norm2 = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(width, 4 * width),
            torch.nn.GELU(),
            torch.nn.Linear(4 * width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, t, c))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class TransformerLM(torch.nn.Module):
    def __init__(self, width: int, context: int) -> None:
        super().__init__()
        layers, heads = transformer_shape(width)
        self.layers, self.width, self.context = layers, width, context
        self.token = torch.nn.Embedding(VOCAB, width)
        self.position = torch.nn.Embedding(context, width)
        self.blocks = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, VOCAB, bias=False)
        self.head.weight = self.token.weight  # tied: the embedding is the unembedding
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # GPT-2's scheme: residual projections shrink with depth.
                std = (
                    0.02 / math.sqrt(2 * layers)
                    if name.endswith(("proj.weight", "2.weight"))
                    else 0.02
                )
                torch.nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                torch.nn.init.zeros_(p)

    def embedding_parameters(self) -> int:
        return self.token.weight.numel() + self.position.weight.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.token(x.long()) + self.position(positions)
        for block in self.blocks:
            h = block(h)
        out: torch.Tensor = self.head(self.norm(h))
        return out


class LSTMLM(torch.nn.Module):
    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.token = torch.nn.Embedding(VOCAB, width)
        self.lstm = torch.nn.LSTM(width, width, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(width, VOCAB)

    def embedding_parameters(self) -> int:
        return sum(p.numel() for p in (*self.token.parameters(), *self.head.parameters()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # cuDNN's LSTM kernels are fp32/fp16: keep the recurrence out of bf16 autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            h, _ = self.lstm(self.token(x.long()).float())
        out: torch.Tensor = self.head(h)
        return out


@register
class CharLM(Task):
    name = "char-lm"
    unit = "bytes"
    reads_features = False  # an embedding comes first
    options_model = CharLMOptions
    options: CharLMOptions

    def compile_helps(self) -> bool:
        # Fused attention/MLP kernels pay off for the transformer; cuDNN's LSTM is
        # already one kernel and the recurrence would break the graph.
        return self.options.model == "transformer"

    @property
    def sequence(self) -> int:
        return self.options.context + 1

    @cached_property
    def corpus(self) -> Corpus:
        o = self.options
        include = o.include or (DEFAULT_INCLUDE if not o.corpus else "*")
        return read_corpus(o.corpus, include)

    @cached_property
    def order(self) -> np.ndarray:
        """The fixed order of the corpus's sequences: validation first, then training."""
        total = self.corpus.data.size // self.sequence
        if total <= self.validation_sequences:
            raise ConfigError(
                f"task char-lm: corpus {self.corpus.source!r} has {self.corpus.data.size} bytes; "
                f"validationBytes={self.options.validation_bytes} leaves nothing to train on"
            )
        return np.random.default_rng([self.data_seed, 0x6C6D]).permutation(total)

    @property
    def validation_sequences(self) -> int:
        return max(self.options.validation_bytes // self.sequence, 1)

    def _sequences(self, indices: np.ndarray) -> Batch:
        n, length = self.corpus.data.size // self.sequence, self.sequence
        chunks = self.corpus.data[: n * length].reshape(n, length)
        rows = torch.from_numpy(np.ascontiguousarray(chunks[np.sort(indices)]))
        return rows[:, :-1], rows[:, 1:]

    def sequences_for(self, data_size: int) -> int:
        pool = self.order.size - self.validation_sequences  # reads the corpus: errors first
        n = data_size // self.sequence
        if n < 1:
            raise ConfigError(
                f"task char-lm: data size {data_size} bytes is smaller than one training "
                f"sequence (context {self.options.context} + 1 = {self.sequence} bytes)"
            )
        if n > pool:
            c = self.corpus
            raise ConfigError(
                f"task char-lm: data size {data_size} bytes needs {n} sequences of "
                f"{self.sequence} bytes, but corpus {c.source!r} ({c.files} files, "
                f"{c.data.size} bytes) holds {pool} ({pool * self.sequence} bytes) after "
                f"holding out {self.validation_sequences * self.sequence} validation bytes; "
                f"use data sizes up to {pool * self.sequence} or a larger corpus"
            )
        return n

    def train_indices(self, data_size: int) -> np.ndarray:
        n = self.sequences_for(data_size)
        start = self.validation_sequences
        return self.order[start : start + n]

    def validation_indices(self) -> np.ndarray:
        return self.order[: self.validation_sequences]

    def train_subset(self, data_size: int) -> Batch:
        return self._sequences(self.train_indices(data_size))

    def check_data_size(self, data_size: int) -> None:
        self.sequences_for(data_size)

    def validation_set(self) -> Batch:
        return self._sequences(self.validation_indices())

    def build_model(self, model_size: int) -> torch.nn.Module:
        if self.options.model == "lstm":
            return LSTMLM(model_size, self.options.lstm_layers)
        return TransformerLM(model_size, self.options.context)

    def loss(
        self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        logits = model(inputs)
        return F.cross_entropy(logits.float().reshape(-1, VOCAB), targets.reshape(-1).long())

    def non_embedding_parameters(self, model: torch.nn.Module) -> int | None:
        total = sum(p.numel() for p in model.parameters())
        embedding: int = getattr(model, "embedding_parameters", lambda: 0)()
        return total - embedding

    def flops_per_item(self, model: torch.nn.Module) -> float | None:
        """Training FLOPs of one sequence: 6 per weight per token for the matrix products
        (unembedding included), plus the attention scores and values (PaLM's count)."""
        tokens = self.options.context
        dense = self.non_embedding_parameters(model) or 0
        width: int = getattr(model, "width", 0)
        per_token = 6.0 * (dense + width * VOCAB)
        if isinstance(model, TransformerLM):
            per_token += 12.0 * model.layers * width * tokens
        return per_token * tokens

    def describe(self, data_size: int) -> dict[str, Any]:
        n = self.sequences_for(data_size)
        return {
            "data_used": n * self.sequence,
            "sequences": n,
            "context": self.options.context,
            "corpus": self.corpus.source,
            "corpus_files": self.corpus.files,
            "corpus_digest": self.corpus.digest,
        }
