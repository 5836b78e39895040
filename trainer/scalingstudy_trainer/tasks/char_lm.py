"""Byte-level language modelling, the character-LM domain of Hestness et al. (2017), and
the same on a tokenized corpus (option ``tokens``: a memory-mapped file of token ids,
`tokens.py`).

The data is cut into sequences of ``context + 1`` bytes (or tokens), put in a fixed
order by the study's data seed; the first sequences in that order are the validation
set and a subset of m units is the next m // (context + 1) sequences, so subsets are
nested and never touch validation. The loss is the mean cross-entropy in nats per byte
(or token).

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
from scalingstudy_trainer.tokens import (
    KeyedPermutation,
    TokenDtype,
    TokenFile,
    open_tokens,
    sequences,
)

VOCAB = 256


class CharLMOptions(TaskOptions):
    tokens: str = ""
    """A flat binary file of token ids (instead of a text corpus read as bytes); data sizes,
    context and validationBytes then count tokens."""
    token_dtype: TokenDtype = "uint16"
    """uint16 or uint32: how the token file stores each id."""
    vocab_size: int | None = Field(default=None, ge=2, le=2**31 - 1)
    """Vocabulary of the token file (required with tokens); every id must be below it."""
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
    def __init__(self, width: int, context: int, vocab: int = VOCAB) -> None:
        super().__init__()
        layers, heads = transformer_shape(width)
        self.layers, self.width, self.context = layers, width, context
        self.token = torch.nn.Embedding(vocab, width)
        self.position = torch.nn.Embedding(context, width)
        self.blocks = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocab, bias=False)
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
    def __init__(self, width: int, layers: int, vocab: int = VOCAB) -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.token = torch.nn.Embedding(vocab, width)
        self.lstm = torch.nn.LSTM(width, width, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(width, vocab)

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

    @property
    def vocab(self) -> int:
        """256 byte values, or the token file's vocabulary."""
        if self.options.tokens and self.options.vocab_size:
            return self.options.vocab_size
        return VOCAB

    @property
    def what(self) -> str:
        """The data's unit in messages."""
        return "tokens" if self.options.tokens else "bytes"

    @cached_property
    def corpus(self) -> Corpus:
        o = self.options
        if o.vocab_size is not None:
            raise ConfigError("task char-lm: options.vocabSize needs tokens (a token file)")
        include = o.include or (DEFAULT_INCLUDE if not o.corpus else "*")
        return read_corpus(o.corpus, include)

    @cached_property
    def token_file(self) -> TokenFile:
        o = self.options
        if o.corpus or o.include:
            raise ConfigError("task char-lm: give tokens or corpus/include, not both")
        if o.vocab_size is None:
            raise ConfigError("task char-lm: options.vocabSize is required with tokens")
        return open_tokens(o.tokens, o.token_dtype)

    @property
    def total_sequences(self) -> int:
        units = self.token_file.tokens if self.options.tokens else self.corpus.data.size
        return units // self.sequence

    @property
    def source(self) -> str:
        return self.token_file.source if self.options.tokens else self.corpus.source

    @cached_property
    def permutation(self) -> KeyedPermutation | np.ndarray:
        """The fixed order of the data's sequences: validation first, then training. A
        byte corpus keeps its shuffled index array (its results stay as they were); a
        token file, which may hold billions of sequences, a keyed permutation."""
        total = self.total_sequences
        if total <= self.validation_sequences:
            size = self.token_file.tokens if self.options.tokens else self.corpus.data.size
            raise ConfigError(
                f"task char-lm: {self.source!r} has {size} {self.what}; "
                f"validationBytes={self.options.validation_bytes} leaves nothing to train on"
            )
        if self.options.tokens:
            return KeyedPermutation(total, self.data_seed)
        return np.random.default_rng([self.data_seed, 0x6C6D]).permutation(total)

    def ordered(self, start: int, stop: int) -> np.ndarray:
        """Sequence indices at positions [start, stop) of the fixed order."""
        order = self.permutation
        if isinstance(order, np.ndarray):
            return order[start:stop]
        return order(np.arange(start, stop, dtype=np.int64))

    @property
    def validation_sequences(self) -> int:
        return max(self.options.validation_bytes // self.sequence, 1)

    def _sequences(self, indices: np.ndarray) -> Batch:
        length = self.sequence
        if self.options.tokens:
            rows = sequences(self.token_file, indices, length)
            top = int(rows.max()) if rows.size else 0
            if top >= self.vocab:
                raise ConfigError(
                    f"task char-lm: tokens file {self.source!r} holds token id {top}, not below "
                    f"vocabSize {self.vocab}"
                )
            tensor = torch.from_numpy(rows)
        else:
            n = self.corpus.data.size // length
            chunks = self.corpus.data[: n * length].reshape(n, length)
            tensor = torch.from_numpy(np.ascontiguousarray(chunks[np.sort(indices)]))
        return tensor[:, :-1], tensor[:, 1:]

    def sequences_for(self, data_size: int) -> int:
        pool = self.total_sequences - self.validation_sequences
        self.permutation  # noqa: B018 (reads the data: its errors come first)
        n = data_size // self.sequence
        unit = self.what
        if n < 1:
            raise ConfigError(
                f"task char-lm: data size {data_size} {unit} is smaller than one training "
                f"sequence (context {self.options.context} + 1 = {self.sequence} {unit})"
            )
        if n > pool:
            held = self.validation_sequences * self.sequence
            raise ConfigError(
                f"task char-lm: data size {data_size} {unit} needs {n} sequences of "
                f"{self.sequence} {unit}, but {self.source!r} holds {pool} "
                f"({pool * self.sequence} {unit}) after holding out {held} validation "
                f"{unit}; use data sizes up to {pool * self.sequence} or more data"
            )
        return n

    def train_indices(self, data_size: int) -> np.ndarray:
        n = self.sequences_for(data_size)
        start = self.validation_sequences
        return self.ordered(start, start + n)

    def validation_indices(self) -> np.ndarray:
        self.sequences_for(self.sequence)  # the same checks
        return self.ordered(0, self.validation_sequences)

    def train_subset(self, data_size: int) -> Batch:
        return self._sequences(self.train_indices(data_size))

    def check_data_size(self, data_size: int) -> None:
        self.sequences_for(data_size)

    def validation_set(self) -> Batch:
        return self._sequences(self.validation_indices())

    def build_model(self, model_size: int) -> torch.nn.Module:
        if self.options.model == "lstm":
            return LSTMLM(model_size, self.options.lstm_layers, self.vocab)
        return TransformerLM(model_size, self.options.context, self.vocab)

    def loss(
        self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        logits = model(inputs)
        return F.cross_entropy(logits.float().reshape(-1, self.vocab), targets.reshape(-1).long())

    def eval_items_limit(self) -> int:
        # An evaluation batch's logits (and their float copy) within 512 MiB: a tokenizer's
        # 50k vocabulary would otherwise take gigabytes (256 bytes at context 128: 1024).
        return max((512 << 20) // (self.options.context * self.vocab * 8), 1)

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
        per_token = 6.0 * (dense + width * self.vocab)
        if isinstance(model, TransformerLM):
            per_token += 12.0 * model.layers * width * tokens
        return per_token * tokens

    def describe(self, data_size: int) -> dict[str, Any]:
        n = self.sequences_for(data_size)
        out: dict[str, Any] = {
            "data_used": n * self.sequence,
            "sequences": n,
            "context": self.options.context,
        }
        if self.options.tokens:
            f = self.token_file
            return {**out, "data_unit": "tokens", "tokens_file": f.source,
                    "tokens_digest": f.digest, "vocab_size": self.vocab}  # fmt: skip
        return {**out, "corpus": self.corpus.source, "corpus_files": self.corpus.files,
                "corpus_digest": self.corpus.digest}  # fmt: skip
