"""Text corpora for the character-level language model, read as bytes.

The default corpus is the Python standard library's own source (``*.py`` outside
test folders) of the interpreter that runs the trainer: it is on every machine and
in every image with no download, it is ~12 MB of real, varied, 99.98% ASCII text
(so bytes and characters nearly coincide), and its licence (the PSF License
Agreement) permits use and copying; it is read in place, never redistributed. It
differs between Python versions, so every result carries the corpus digest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scalingstudy_trainer.errors import ConfigError

DEFAULT_INCLUDE = "*.py"
#: Folders of the standard library that hold tests or third-party code, not the library.
STDLIB_SKIP = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages"})
SKIP_ALWAYS = frozenset({"__pycache__", ".git"})


@dataclass(frozen=True)
class Corpus:
    data: NDArray[np.uint8]
    files: int
    source: str
    digest: str


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _files(root: Path, include: str, skip: frozenset[str]) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, names in os.walk(root, onerror=_raise):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        found += [Path(folder) / n for n in sorted(names) if fnmatch.fnmatch(n, include)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _raise(error: OSError) -> None:
    raise ConfigError(f"corpus: cannot read {error.filename!r}: {error.strerror}")


def read_corpus(path: str, include: str = DEFAULT_INCLUDE) -> Corpus:
    """All files under ``path`` matching ``include`` (or the one file ``path``), joined
    in path order; the standard library's source when ``path`` is empty."""
    if path:
        root = Path(path)
        skip = SKIP_ALWAYS
        if not root.exists():
            raise ConfigError(f"corpus: {path!r} does not exist")
    else:
        root, skip = stdlib_root(), SKIP_ALWAYS | STDLIB_SKIP
    files = [root] if root.is_file() else _files(root, include, skip)
    if not files:
        raise ConfigError(f"corpus: no files matching {include!r} under {str(root)!r}")
    parts: list[bytes] = []
    for file in files:
        try:
            parts.append(file.read_bytes())
        except OSError as exc:
            raise ConfigError(f"corpus: cannot read {str(file)!r}: {exc.strerror}") from None
    text = b"\n".join(p for p in parts if p)
    if not text:
        raise ConfigError(f"corpus: the {len(files)} file(s) under {str(root)!r} are all empty")
    return Corpus(
        data=np.frombuffer(text, dtype=np.uint8),
        files=len(files),
        source=str(root),
        digest=hashlib.sha256(text).hexdigest()[:16],
    )
