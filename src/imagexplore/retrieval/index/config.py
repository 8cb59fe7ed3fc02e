"""`IndexConfig`: how a DeepIndex is built (types, mode, vocabulary, signatures) and how queries are scored.

Each reconstructed choice of the thesis (ch. 4 steps 3-6) is a field, so it can be corrected without code.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from imagexplore.errors import ConfigError

MODES = ("1d", "2d")
SCORINGS = ("votes_signature", "votes", "signature")
KERNELS = ("exp", "threshold")
# Options that only change how queries are scored, so an index view may swap them without a rebuild.
QUERY_FIELDS = frozenset({"ma", "scoring", "kernel", "sigma", "threshold"})
# Fields that fix how an index is laid out: shards to be merged or searched together must share them.
LAYOUT_FIELDS = ("types", "mode", "float16_signatures")
_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class IndexConfig:
    """How a DeepIndex is built (types, mode, vocabulary, signatures) and how queries are scored.

    ``k`` is one vocabulary size for every type or a mapping type -> size. ``mode="1d"`` indexes one feature
    type, ``"2d"`` the pair of word assignments of exactly two types (a coupled multi-index).
    """

    types: tuple[str, ...] = ("feature",)
    mode: str = "1d"
    k: int | Mapping[str, int] = 1024
    ma: int = 1
    scoring: str = "votes_signature"
    kernel: str = "exp"
    sigma: float = 0.5
    threshold: float = 0.5
    signature_dim: int = 512
    float16_signatures: bool = False
    kmeans_niter: int = 20
    kmeans_seed: int = 0
    points_per_word: int = 20

    def __post_init__(self):
        object.__setattr__(self, "types", tuple(self.types))
        if isinstance(self.k, Mapping):
            object.__setattr__(self, "k", dict(self.k))
        if self.mode not in MODES:
            raise ConfigError(f"index mode must be one of {MODES}, not {self.mode!r}")
        want = 1 if self.mode == "1d" else 2
        if len(self.types) != want or len(set(self.types)) != want:
            raise ConfigError(
                f"a {self.mode} index needs exactly {want} distinct feature types, got {self.types}"
            )
        for name in self.types:
            if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
                raise ConfigError(
                    f"feature type {name!r} must be letters, digits, '_', '.' or '-' (a file name)"
                )
        if isinstance(self.k, dict):
            if set(self.k) != set(self.types):
                raise ConfigError(
                    f"index k must give one size per feature type {self.types}, got {sorted(self.k)}"
                )
            sizes = list(self.k.values())
        else:
            sizes = [self.k]
        for name, value in [("k", s) for s in sizes] + [
            ("ma", self.ma),
            ("signature_dim", self.signature_dim),
            ("kmeans_niter", self.kmeans_niter),
            ("points_per_word", self.points_per_word),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"index {name} must be a positive integer, not {value!r}")
        if self.scoring not in SCORINGS:
            raise ConfigError(f"index scoring must be one of {SCORINGS}, not {self.scoring!r}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"index kernel must be one of {KERNELS}, not {self.kernel!r}")
        if not self.sigma > 0:
            raise ConfigError(f"index sigma must be > 0, not {self.sigma!r}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"index threshold is a cosine, it must lie in [-1, 1], not {self.threshold!r}")

    def k_for(self, name: str) -> int:
        """The requested vocabulary size of one feature type (before the small-collection rule)."""
        return self.k[name] if isinstance(self.k, dict) else self.k

    def to_json(self) -> dict:
        """Plain JSON form stored as ``config.json``, read back by `from_json`."""
        out = dataclasses.asdict(self)
        out["types"] = list(self.types)
        return out

    @classmethod
    def from_json(cls, data) -> IndexConfig:
        if not isinstance(data, dict):
            raise ConfigError("an index config must be a JSON object of IndexConfig fields")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown index config key(s) {unknown}: allowed are {sorted(known)}")
        return cls(**data)


def check_same_layout(config: IndexConfig, other: IndexConfig) -> None:
    for name in LAYOUT_FIELDS:
        if getattr(config, name) != getattr(other, name):
            raise ConfigError(
                f"index {name} differs ({getattr(config, name)!r} vs {getattr(other, name)!r}): shards must share it"
            )
