"""DeepIndex shards served by Ray actors: `api.ShardedSearch(..., backend="ray")` (docs/retrieval_scaling.md).

One actor per shard holds that shard's index: it reads the shard's directory itself (`stored.read_stored`, no
torch in the actor), or gets an in-memory index shipped through Ray's object store. The driver describes the
queries once (the first shard's CNN and vocabularies), then sends the encoded queries to every actor and merges
what they return, exactly as `index.ShardedIndex` does in one process: the actors report their posting lists'
document frequencies once, the driver sums them (`shards.global_weights`) and hands every actor the global idf
and df of its lists, query norms are computed by the driver over all lists, a global ``max_candidates`` cut is
made by the driver between the actors' votes and their signature stage, and the per-shard top-k lists are merged
with ties to the earlier shard. The scores and their order are bit-identical to the in-process search.

Failure semantics (a search never returns a partial list):

1. The actor of a shard read from a directory whose process dies (killed, out of memory, its node lost) is
   restarted once by Ray (``max_restarts=1``) and the call it was running is sent again
   (``max_task_retries=1``); calls only read, so that is safe. The restarted actor reads its shard again and,
   at its first call, its weights from the set-up object the driver keeps in Ray's object store. The caller
   gets the full, identical answer, only later.
2. An actor that Ray does not restart (``ray.kill`` with the default ``no_restart=True``, restarts used up, and
   the actors of shards shipped from memory, which Ray cannot promise to restart) is replaced by the driver
   with a new actor for the same shard, once per call, and the call is sent again.
3. If that fails too (the replacement dies, or the shard cannot be read any more), `ShardUnavailableError`
   names the shard and both causes. A shard that reads back different data than at set-up (rebuilt on disk
   meanwhile) raises `DataError`: its weights would no longer be those of the whole.

`retrieve serve-shards` keeps the shards loaded on a cluster: a detached, named `Coordinator` actor holds a
`RayShardedIndex` (and so the shard actors); `retrieve search --served NAME` (`connect_served`) describes its
queries locally and sends the encoded queries to it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.index.collection import Collection
from imagexplore.retrieval.index.config import QUERY_FIELDS, IndexConfig
from imagexplore.retrieval.index.search import (
    EncodedQueries,
    Searcher,
    keep_best,
    merge_found,
    query_chunks,
    query_norm,
)
from imagexplore.retrieval.index.shards import ShardScorer, global_weights
from imagexplore.retrieval.index.vocabulary import IndexModels
from imagexplore.retrieval.stored import read_stored

INSTALL_HINT = "pip install imagexplore[ray]"
NAMESPACE = "imagexplore"  # of the named actors of `retrieve serve-shards`
# Ray restarts a dead shard actor once and re-sends its call; SPREAD puts the shards on different nodes.
ACTOR_OPTIONS = {"max_restarts": 1, "max_task_retries": 1, "scheduling_strategy": "SPREAD"}


class ShardUnavailableError(UserError):
    """A shard's actor died and a new one could not answer either: the search is refused, never partial."""


def import_ray():
    """The ``ray`` module, or a one-line `UserError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"the Ray backend needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None, need_cluster: str | None = None):
    """Ray as the caller initialised it; else connected to ``address`` ("auto": the cluster `ray start` runs on
    this machine, "HOST:6379", or "ray://HOST:10001" for Ray Client); else a local instance of ``num_cpus``
    CPUs (default: all), said on stderr, unless ``need_cluster`` (what needs one) refuses that. Returns the
    ``ray`` module."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address:
        try:
            ray.init(address=address, namespace=NAMESPACE)
        except ConnectionError as exc:
            raise UserError(
                f"no Ray cluster at {address} ({str(exc).strip().splitlines()[0][:200]}): start one with "
                "`ray start --head`, then give --address auto (on that machine) or HEAD_HOST:6379"
            ) from None
        return ray
    if need_cluster is not None:
        raise UserError(
            f"{need_cluster} needs a running Ray cluster (`ray start --head`): give its --address "
            "(auto on the head machine, or HEAD_HOST:6379)"
        )
    num_cpus = num_cpus or os.cpu_count() or 1
    ray.init(num_cpus=num_cpus, include_dashboard=False, namespace=NAMESPACE)
    print(
        f"imagexplore: no Ray cluster given: started a local Ray instance ({num_cpus} CPUs), stopped when this "
        "process ends; pass address= (--address) to use a cluster",
        file=sys.stderr,
    )
    return ray


# ------------------------------------------------------------------------------------------------ shard actor
def models_arrays(models: IndexModels) -> dict:
    """Vocabularies and PCA as plain arrays (`IndexModels.from_arrays` makes them whole again, FAISS included)."""
    return {
        "vocab": dict(models.vocab),
        "pca_mean": dict(models.pca_mean),
        "pca_components": dict(models.pca_components),
        "k_requested": dict(models.k_requested),
        "source": models.source,
        "assignment": dict(models.assignment),
        "hnsw_ef_search": models.hnsw_ef_search,
    }


def models_from(arrays: Mapping) -> IndexModels:
    return IndexModels.from_arrays(
        {t: np.array(v) for t, v in arrays["vocab"].items()},
        {t: np.array(v) for t, v in arrays["pca_mean"].items()},
        {t: np.array(v) for t, v in arrays["pca_components"].items()},
        arrays["k_requested"],
        arrays["source"],
        arrays["assignment"],
        arrays["hnsw_ef_search"],
    )


def fingerprint(data: Collection) -> str:
    """What a shard holds, in short: its images and its posting lists with their df (a reloaded shard must
    match what the global weights were computed from)."""
    h = hashlib.sha256()
    for arr in (data.postings.keys, data.postings.df, data.postings.offsets):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\n".join(map(str, data.images)).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


class ShardServer:
    """The body of one shard actor: the shard is read at the first call (again after a restart), and scored
    under the global weights of the set-up object each scoring call names (read once per actor life)."""

    def __init__(self, source: Mapping):
        # {"directory": absolute path, "names_in": the path as the user gave it} or {"shipped": [ObjectRef]}
        self._source = dict(source)
        self._loaded: dict | None = None
        self._scorer: ShardScorer | None = None
        self._setup_id: str | None = None

    def _load(self) -> dict:
        if self._loaded is None:
            src = self._source
            if "directory" in src:
                got = read_stored(src["directory"], names_in=src["names_in"])
                inverted = got.inverted
                loaded = {
                    "data": inverted.collection,
                    "config": inverted.config,
                    "models": inverted.models,
                    "backbone": got.backbone,
                    "weights": got.weights,
                }
            else:
                import ray

                shipped = ray.get(src["shipped"][0])
                loaded = {**shipped, "models": models_from(shipped["models"])}
            loaded["fingerprint"] = fingerprint(loaded["data"])
            self._loaded = loaded
        return self._loaded

    def describe(self) -> dict:
        """What the driver needs once: backbone, config, images, posting keys with their df, fingerprint."""
        got = self._load()
        postings = got["data"].postings
        return {
            "backbone": got["backbone"],
            "weights": got["weights"],
            "config": got["config"],
            "images": tuple(got["data"].images),
            "keys": postings.keys,
            "df": postings.df,
            "fingerprint": got["fingerprint"],
            "pid": os.getpid(),
        }

    def models(self) -> dict:
        return models_arrays(self._load()["models"])

    def same_models(self, arrays: Mapping) -> bool:
        """Whether this shard has the vocabularies and PCA ``arrays`` (`IndexModels.same_as`)."""
        return models_from(arrays).same_as(self._load()["models"])

    def pid(self) -> int:
        return os.getpid()

    def _scorer_for(self, setup: list) -> ShardScorer:
        key = setup[0].hex()
        if self._setup_id != key:
            import ray

            got = ray.get(setup[0])
            loaded = self._load()
            if got["fingerprint"] != loaded["fingerprint"]:
                self._loaded = None  # read again at the next call: the shard may be back by then
                raise DataError(
                    "it no longer holds what it held when the search was set up (rebuilt or changed since): put "
                    "it back or set the search up again"
                )
            self._scorer = ShardScorer(loaded["data"], got["config"], got["idf"], got["df"])
            self._setup_id = key
        return self._scorer

    def votes(self, setup: list, encoded: EncodedQueries, qnorms, max_df, n_total: int, max_cands: int):
        return self._scorer_for(setup).votes(encoded, qnorms, max_df, n_total, max_cands)

    def finish(self, setup: list, encoded: EncodedQueries, todo, k: int, rescore=None):
        return self._scorer_for(setup).finish(encoded, todo, k, rescore)

    def search(self, setup: list, encoded: EncodedQueries, qnorms, max_df, n_total: int, k: int):
        return self._scorer_for(setup).search(encoded, qnorms, max_df, n_total, k)


_ACTOR_CLASSES: dict = {}


def _remote(cls):
    """``ray.remote(cls)``, made once (Ray is imported only when a Ray backend is used)."""
    if cls not in _ACTOR_CLASSES:
        _ACTOR_CLASSES[cls] = import_ray().remote(cls)
    return _ACTOR_CLASSES[cls]


# ----------------------------------------------------------------------------------------------------- driver
class RayShardedIndex(Searcher):
    """`index.ShardedIndex` over shards held by Ray actors (one each), with the same results bit for bit.

    ``shards``: per shard a directory (read by its actor, at the same path on every node) or an `api.Index`
    (shipped to its actor); ``labels`` name them in messages. Queries are encoded here with the first shard's
    vocabularies and scored with its query options, as in `ShardedIndex`. ``actor_options`` are laid over
    `ACTOR_OPTIONS` (e.g. ``{"memory": 8 << 30}`` or ``{"resources": {...}}`` to place shards).
    """

    def __init__(
        self,
        shards: Sequence,
        labels: Sequence[str],
        *,
        address: str | None = None,
        actor_options: Mapping | None = None,
        check=None,
    ):
        ray = connect(address)
        self._labels = list(labels)
        self._options = {**ACTOR_OPTIONS, **(actor_options or {})}
        self._sources = [_source(ray, shard) for shard in shards]
        self._actors = [self._new_actor(p) for p in range(len(self._sources))]
        try:
            metas = self._fan("describe", None, setup=False)
            first_models = self._fan("models", None, setup=False, only=[0])[0]
            if check is not None:
                first_ref = ray.put(first_models)
                same = self._fan("same_models", (first_ref,), setup=False, only=range(1, len(metas)))
                check(metas, self._labels, [True, *same])
        except BaseException:
            self.close()  # shards that cannot be searched together are not left loaded
            raise
        self.backbone, self.weights = metas[0]["backbone"], metas[0]["weights"]
        self.config: IndexConfig = metas[0]["config"]
        self.models = models_from(first_models)
        sizes = [len(m["images"]) for m in metas]
        self._keys, self._idf, weights = global_weights(
            [m["keys"] for m in metas], [m["df"] for m in metas], sizes
        )
        self._n_images = sum(sizes)
        self._first_ids = [int(x) for x in np.cumsum([0, *sizes[:-1]])]
        self._bounds = list(zip(self._first_ids, sizes))
        self._images = tuple(x for m in metas for x in m["images"])
        self._shard_weights = [(idf, df, m["fingerprint"]) for (idf, df), m in zip(weights, metas)]
        self._setups = self._put_setups()
        self.pids = [m["pid"] for m in metas]

    def _put_setups(self) -> list:
        """Per shard what its actor scores with, in Ray's object store: the query options and its lists' global
        idf and df (a restarted actor reads it again)."""
        ray = import_ray()
        return [
            ray.put({"label": label, "config": self.config, "idf": idf, "df": df, "fingerprint": fp})
            for label, (idf, df, fp) in zip(self._labels, self._shard_weights)
        ]

    def with_query_options(self, **changes) -> RayShardedIndex:
        """A view on the same actors that scores queries differently (`InvertedIndex.with_query_options`)."""
        other = sorted(set(changes) - QUERY_FIELDS)
        if other:
            raise ConfigError(
                f"{other} change how the index is built: only {sorted(QUERY_FIELDS)} can change"
            )
        view = copy.copy(self)  # shares the list of actors: a replaced actor serves both
        view.config = dataclasses.replace(self.config, **changes)
        view._setups = view._put_setups()
        return view

    def __len__(self) -> int:
        return self._n_images

    @property
    def images(self) -> tuple:
        return self._images

    @property
    def actors(self) -> list:
        """The shard actors' handles, in shard order (a replaced actor's handle changes)."""
        return list(self._actors)

    def close(self) -> None:
        """End the shard actors (they also end with this process, or when nothing refers to them)."""
        ray = import_ray()
        for actor in self._actors:
            ray.kill(actor)
        self._actors.clear()  # in place: views (`with_query_options`) are closed too

    # ------------------------------------------------------------------------------------------------ search
    def _snapshot(self):
        raise NotImplementedError("the shards are held by Ray actors: RayShardedIndex scores through them")

    def _search_all(self, encoded: EncodedQueries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`Searcher._search_all` with every part scored by its actor: `Searcher._score_chunk` step by step."""
        ray = import_ray()
        config = self.config
        n_queries, n = len(encoded.keys), self._n_images
        ids = np.full((n_queries, k), -1, dtype=np.int64)
        scores = np.full((n_queries, k), -np.inf)
        for rows in query_chunks(n_queries, n):
            chunk = encoded.select(rows)
            ref = ray.put(chunk)
            local = range(len(rows))
            if config.scoring == "signature":
                found = self._fan("finish", (ref, None, k))
            else:
                max_df, max_cands = config.pruning_for(n)
                qnorms = [query_norm(self._keys, self._idf, chunk, j, config.burst) for j in local]
                if max_cands is None:
                    found = self._fan("search", (ref, qnorms, max_df, n, k))
                else:
                    voted = self._fan("votes", (ref, qnorms, max_df, n, max_cands))
                    kept = [keep_best(self._bounds, [v[j] for v in voted], max_cands) for j in local]
                    stop = self._stop(max_df, n)
                    rescore = None if stop is None else (qnorms, *stop)
                    todo = [(ref, [kept[j][p] for j in local], k, rescore) for p in range(len(self._actors))]
                    found = self._fan("finish", todo, per_shard=True)
            for j, i in enumerate(rows):
                got_ids, got_scores = merge_found(self._first_ids, [f[j] for f in found], k)
                ids[i, : got_ids.size], scores[i, : got_ids.size] = got_ids, got_scores
        return ids, scores

    # ------------------------------------------------------------------------------------------------ actors
    def _new_actor(self, p: int):
        options = self._options
        if (
            "shipped" in self._sources[p]
        ):  # Ray cannot promise to restore such constructor arguments: replace it
            options = {**options, "max_restarts": 0, "max_task_retries": 0}
        return _remote(ShardServer).options(**options).remote(self._sources[p])

    def _fan(self, method: str, args, setup: bool = True, only=None, per_shard: bool = False) -> list:
        """``method(*args)`` on the shards ``only`` (default all) at once (``per_shard``: ``args[p]`` for shard
        ``p``), their answers in shard order; an actor found dead is replaced once (module docstring); any other
        failure raises, so nothing partial is kept."""
        ray = import_ray()
        if not self._actors:
            raise UserError("this search was closed (its shard actors ended): set it up again")
        shards = list(range(len(self._actors)) if only is None else only)
        args_of = [tuple(args[p] if per_shard else args or ()) for p in range(len(self._actors))]
        refs = [self._call(p, method, args_of[p], setup) for p in shards]
        out = []
        for p, ref in zip(shards, refs):
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayActorError as died:
                out.append(self._replace_and_call(p, method, args_of[p], setup, died))
            except ray.exceptions.RayTaskError as exc:
                raise _shard_error(exc, self._labels[p]) from None
        return out

    def _call(self, p: int, method: str, args: tuple, setup: bool):
        lead = ([self._setups[p]],) if setup else ()
        return getattr(self._actors[p], method).remote(*lead, *args)

    def _replace_and_call(self, p: int, method: str, args: tuple, setup: bool, died: Exception):
        ray = import_ray()
        try:
            ray.kill(self._actors[p])  # in case Ray is still restarting it
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._actors[p] = self._new_actor(p)
        try:
            return ray.get(self._call(p, method, args, setup))
        except ray.exceptions.RayActorError as again:
            raise ShardUnavailableError(
                f"shard {self._labels[p]}: its Ray actor died ({_reason(died)}) and a new one failed too "
                f"({_reason(again)}); no partial results are returned: check the shard and its node"
            ) from again
        except ray.exceptions.RayTaskError as exc:
            raise _shard_error(exc, self._labels[p]) from None


def _source(ray, shard) -> dict:
    """How an actor gets its shard: a directory's absolute path (and the path as given, to name images as
    `Index.load` of it does here), or an in-memory index put into the object store."""
    if isinstance(shard, str | os.PathLike):
        return {"directory": os.path.abspath(shard), "names_in": os.fspath(shard)}
    inverted = shard.inverted
    shipped = {
        "data": inverted.collection,
        "config": inverted.config,
        "models": models_arrays(inverted.models),
        "backbone": shard.backbone,
        "weights": shard.weights,
    }
    return {"shipped": [ray.put(shipped)]}


def _reason(exc: Exception) -> str:
    """The first line of a Ray error, for a one-line message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _shard_error(exc, label: str) -> Exception:
    """An error raised inside a shard actor: a `UserError` comes back as itself, naming the shard; anything
    else (a bug) as Ray reports it, with the remote traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UserError):
        err = type(cause)(f"shard {label}: {cause}")
        err.__cause__ = exc
        return err
    return exc


# --------------------------------------------------------------------------------------- served (serve-shards)
class Coordinator:
    """The body of the detached, named actor of `retrieve serve-shards`: it holds a `RayShardedIndex` (whose
    shard actors it owns, so they live as long as it does) and scores encoded queries for `ServedShards`
    clients. The shards are loaded at its first call (again after a restart)."""

    def __init__(self, directories: Sequence[str], actor_options: Mapping | None = None):
        self._directories = list(directories)
        self._options = actor_options
        self._index: RayShardedIndex | None = None

    def _get(self) -> RayShardedIndex:
        if self._index is None:
            from imagexplore.retrieval.stored import check_described

            self._index = RayShardedIndex(
                self._directories, self._directories, actor_options=self._options, check=check_described
            )
        return self._index

    def info(self) -> dict:
        index = self._get()
        return {
            "backbone": index.backbone,
            "weights": index.weights,
            "config": index.config,
            "models": models_arrays(index.models),
            "images": index.images,
            "shards": list(self._directories),
        }

    def search_encoded(self, encoded: EncodedQueries, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._get()._search_all(encoded, k)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


def serve(
    directories: Sequence[str | os.PathLike],
    name: str,
    address: str | None = None,
    actor_options: Mapping | None = None,
) -> dict:
    """Start the detached actor ``name`` that keeps the shards in ``directories`` loaded on the cluster at
    ``address`` (one that outlives this process: `ray start`), wait until they are, and return its `info`."""
    ray = connect(address, need_cluster="serving shards")
    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        pass
    else:
        raise UserError(
            f"shards are already served as {name!r}: stop them first (`imagexplore retrieve serve-shards --stop "
            f"--name {name}`) or choose another --name"
        )
    absolute = [os.path.abspath(d) for d in directories]
    coordinator = (
        _remote(Coordinator)
        .options(name=name, namespace=NAMESPACE, lifetime="detached", max_restarts=1, max_task_retries=1)
        .remote(absolute, actor_options)
    )
    try:
        return _served_call(ray, coordinator, name, "info")
    except Exception:
        ray.kill(coordinator)  # a service that cannot load its shards is not left behind
        raise


def stop_served(name: str, address: str | None = None) -> None:
    """End the served shards ``name`` (the coordinator and its shard actors)."""
    ray = connect(address, need_cluster="stopping served shards")
    coordinator = _served(ray, name)
    try:
        ray.get(coordinator.close.remote())
    except ray.exceptions.RayError:
        pass  # dead already: killing it below is all there is to do
    ray.kill(coordinator)


class ServedShards(Searcher):
    """A client of the shards `serve` keeps loaded as ``name``: queries are encoded here (with the vocabularies
    the service reports) and scored by it; results as `RayShardedIndex`'s, bit for bit."""

    def __init__(self, name: str, address: str | None = None):
        ray = connect(address, need_cluster=f"searching the served shards {name!r}")
        self._name = name
        self._coordinator = _served(ray, name)
        info = _served_call(ray, self._coordinator, name, "info")
        self.backbone, self.weights = info["backbone"], info["weights"]
        self.config = info["config"]
        self.models = models_from(info["models"])
        self._images = tuple(info["images"])
        self.shards = info["shards"]

    def __len__(self) -> int:
        return len(self._images)

    @property
    def images(self) -> tuple:
        return self._images

    def close(self) -> None:
        """Nothing to end: the served shards stay up for other clients (`stop_served` ends them)."""

    def _snapshot(self):
        raise NotImplementedError("the shards are served by a Ray actor: ServedShards scores through it")

    def _search_all(self, encoded: EncodedQueries, k: int) -> tuple[np.ndarray, np.ndarray]:
        ray = import_ray()
        return _served_call(ray, self._coordinator, self._name, "search_encoded", ray.put(encoded), k)


def _served(ray, name: str):
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        raise UserError(
            f"no shards are served as {name!r} on this Ray cluster: start them with `imagexplore retrieve "
            f"serve-shards --name {name} --index DIR ... --address ADDR`"
        ) from None


def _served_call(ray, coordinator, name: str, method: str, *args):
    try:
        return ray.get(getattr(coordinator, method).remote(*args))
    except ray.exceptions.RayActorError as died:
        raise ShardUnavailableError(
            f"the served shards {name!r} are gone ({_reason(died)}): start them again with `imagexplore "
            "retrieve serve-shards`"
        ) from died
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            raise type(cause)(str(cause)) from exc
        raise
