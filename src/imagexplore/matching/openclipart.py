"""Open Clip Art 0.18 (Debian ``openclipart-png`` + ``openclipart-svg``) as a caption set: the SVG metadata
(title, keywords, description) parsed safely and cached, duplicates merged, a fixed split. Read through
`imagexplore.matching.data.read_caption_set("openclipart", ...)`."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imagexplore.errors import ConfigError, DataError
from imagexplore.matching.data import (
    OPENCLIPART,
    OPENCLIPART_TEST,
    OPENCLIPART_VAL,
    SPLITS,
    CaptionSet,
    _check_split,
    _clean,
    log,
)

# --------------------------------------------------------------------------------------------- open clip art
_NS_DC = "http://purl.org/dc/elements/1.1/"
_NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
MAX_SVG_BYTES = 32 * 2**20
_SVG_PARSER_VERSION = 2  # 2: pixel counts recorded


class _Done(Exception):
    pass


def parse_svg_metadata(path: str | os.PathLike, max_bytes: int = MAX_SVG_BYTES) -> dict:
    """``{"title", "keywords", "description"}`` of an SVG's RDF metadata (the first ``cc:Work``).

    A streaming expat parse that stops at the end of ``<metadata>``. Guards: files over ``max_bytes`` are
    refused; a DOCTYPE is allowed (expat never fetches external DTDs) but an entity declaration is only accepted
    when it is a plain literal without references (Illustrator's namespace entities), so nested expansion
    ("billion laughs") and external entities are refused. Raises `DataError` for anything unparsable.
    """
    from xml.parsers import expat

    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"{path} is {size} bytes, over the {max_bytes}-byte limit for metadata parsing")
    out = {"title": "", "keywords": [], "description": ""}
    stack: list[str] = []
    state = {"work": 0, "text": None, "found": False}

    def entity(name, is_param, value, base, system_id, public_id, notation):
        if is_param or value is None or "&" in value or "%" in value or len(value) > 1024:
            raise DataError(f"{path}: entity {name!r} refused (only plain literal entities are read)")

    def start(tag, attrs):
        stack.append(tag)
        local = tag.rsplit(" ", 1)[-1]
        if local == "Work" and not state["found"]:
            state["work"] = len(stack)
        if state["work"] and tag in (f"{_NS_DC} title", f"{_NS_DC} description", f"{_NS_RDF} li"):
            if tag != f"{_NS_RDF} li" or f"{_NS_DC} subject" in stack[state["work"] :]:
                if tag == f"{_NS_RDF} li" or len(stack) == state["work"] + 1:
                    state["text"] = []

    def end(tag):
        local = tag.rsplit(" ", 1)[-1]
        if state["text"] is not None and tag == stack[-1] and local in ("title", "description", "li"):
            text = _clean("".join(state["text"]))
            state["text"] = None
            if local == "li":
                out["keywords"].append(text)
            elif not out[local]:
                out[local] = text
        if state["work"] and len(stack) == state["work"]:
            state["work"], state["found"] = 0, True
        stack.pop()
        if local == "metadata" and state["found"]:
            raise _Done

    def chars(data):
        if state["text"] is not None:
            state["text"].append(data)

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.EntityDeclHandler = entity
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = chars
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 16):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except _Done:
        pass
    except expat.ExpatError as exc:
        raise DataError(f"{path} is not well-formed XML ({exc})") from None
    out["keywords"] = [k for k in dict.fromkeys(out["keywords"]) if k]
    return out


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    base = cache_dir or os.environ.get("IMAGEXPLORE_CACHE") or Path.home() / ".cache" / "imagexplore"
    return Path(base)


def _png_pixels(path: Path) -> int:
    """Width × height from the PNG's header (nothing decoded); 0 when unreadable."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.width * im.height
    except (OSError, Image.DecompressionBombError):
        return 0


def _openclipart_index(root: Path, cache_dir: str | os.PathLike | None) -> dict:
    """Every drawing's metadata and PNG content hash, parsed once and cached by the package's file list."""
    png_root, svg_root = root / "png", root / "svg"
    if not png_root.is_dir() or not svg_root.is_dir():
        raise DataError(
            f"{root} lacks png/ and svg/: install Debian openclipart-png and openclipart-svg (run `make data`)"
        )
    pngs = sorted(p for p in png_root.rglob("*.png") if not p.name.startswith("."))
    listing = hashlib.sha256(str(_SVG_PARSER_VERSION).encode())
    for p in pngs:
        st = p.stat()
        svg = svg_root / p.relative_to(png_root).with_suffix(".svg")
        sst = svg.stat() if svg.is_file() else None
        listing.update(
            f"{p.relative_to(png_root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\t"
            f"{sst and sst.st_size}\t{sst and sst.st_mtime_ns}\n".encode()
        )
    cache = _cache_dir(cache_dir) / f"openclipart_{listing.hexdigest()[:16]}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    began = time.perf_counter()
    drawings, skipped = [], []
    for p in pngs:
        rel = p.relative_to(png_root).with_suffix("").as_posix()
        svg = svg_root / f"{rel}.svg"
        if not svg.is_file():
            meta = {"title": "", "keywords": [], "description": ""}
            skipped.append([rel, "no SVG"])
        else:
            try:
                meta = parse_svg_metadata(svg)
            except (DataError, OSError) as exc:
                meta = {"title": "", "keywords": [], "description": ""}
                skipped.append([rel, str(exc)])
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
        drawings.append({"rel": rel, "png_sha1": digest, "pixels": _png_pixels(p), **meta})
    index = {
        "root": str(root),
        "drawings": drawings,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - began, 2),
    }
    try:
        from imagexplore.engine.checkpoint import atomic_write_bytes

        atomic_write_bytes(cache, lambda fh: fh.write(json.dumps(index).encode()))
    except OSError as exc:
        log.warning("could not cache the Open Clip Art metadata in %s (%s)", cache, exc)
    return index


def openclipart_captions(
    d: dict, title: bool = True, keywords: bool = True, description: bool = True
) -> list[str]:
    """The texts of one drawing: its title, ``keywords: a, b, c`` (without ``unsorted``), its description.

    ``d["title"]`` and ``d["description"]`` may be a str or a list of str (the copies of one content pooled);
    the keywords of all copies make one caption.
    """

    def as_list(v):
        return [v] if isinstance(v, str) else list(v)

    out = [t for t in as_list(d["title"]) if t] if title else []
    kws = [k for k in dict.fromkeys(d["keywords"]) if k and k.lower() != "unsorted"]
    if keywords and kws:
        out.append("keywords: " + ", ".join(kws))
    if description:
        out += [t for t in as_list(d["description"]) if t]
    return list(dict.fromkeys(out))


def read_openclipart(
    root: str | os.PathLike | None = None,
    split: str = "test",
    cache_dir: str | os.PathLike | None = None,
    test_size: int = OPENCLIPART_TEST,
    val_size: int = OPENCLIPART_VAL,
    title: bool = True,
    keywords: bool = True,
    description: bool = True,
) -> CaptionSet:
    """Open Clip Art 0.18 (Debian ``openclipart-png`` + ``openclipart-svg``): the PNG and its SVG's metadata.

    Texts of a drawing (each a caption): the title, ``keywords: a, b, c`` (``unsorted`` dropped) and the
    description, when non-empty. Label: the top-level category folder. About a quarter of the PNGs are
    byte-identical copies filed under several categories; each content appears ONCE (its first path in sorted
    order gives the file and label; the captions of all copies are pooled, duplicates removed), so no image is
    on both sides of a split. Drawings without any text are skipped, and so are the 16 PNGs over Pillow's
    pixel limit (posters of ~168 megapixels, 0.5 GB each to decode).

    The split is fixed and machine-independent: the distinct drawings sorted by the SHA-1 of their PNG bytes,
    the first ``test_size`` (1,000) are ``test``, the next ``val_size`` (500) ``val``, the rest ``train``
    (``all``: everything). The SVG parse is cached as JSON under ``$IMAGEXPLORE_CACHE`` (else
    ``~/.cache/imagexplore``), keyed by the package's file list (names, sizes, times).
    """
    _check_split(split, (*SPLITS, "all"))
    root = OPENCLIPART if root is None else Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root} not found: install Debian openclipart-png and openclipart-svg (run `make data`)"
        )
    index = _openclipart_index(root, cache_dir)
    groups: dict[str, dict] = {}
    skipped = [tuple(s) for s in index["skipped"]]
    for d in index["drawings"]:  # sorted by path: the first copy of a content names it
        if not 0 < d["pixels"] <= Image.MAX_IMAGE_PIXELS:  # 16 posters of ~168 MP: 0.5 GB each to decode
            skipped.append((d["rel"], f"{d['pixels']} pixels: unreadable or over Pillow's limit"))
            continue
        g = groups.setdefault(
            d["png_sha1"], {"rel": d["rel"], "title": [], "keywords": [], "description": []}
        )
        for key in ("title", "keywords", "description"):
            g[key] += d[key] if key == "keywords" else [d[key]] if d[key] else []
    for g in groups.values():
        g["captions"] = openclipart_captions(g, title, keywords, description)
    ordered = sorted((sha, g) for sha, g in groups.items() if g["captions"])
    skipped += [(g["rel"], "no text") for g in groups.values() if not g["captions"]]
    n_test, n_val = int(test_size), int(val_size)
    if n_test < 0 or n_val < 0 or n_test + n_val > len(ordered):
        raise ConfigError(
            f"openclipart: test_size {test_size} + val_size {val_size} exceed {len(ordered)} drawings"
        )
    bounds = {"test": (0, n_test), "val": (n_test, n_test + n_val), "train": (n_test + n_val, len(ordered))}
    lo, hi = bounds.get(split, (0, len(ordered)))
    chosen = sorted((g["rel"], g) for _, g in ordered[lo:hi])
    images, captions, ci, labels = [], [], [], []
    for rel, g in chosen:
        caps = list(dict.fromkeys(g["captions"]))
        captions += caps
        ci += [len(images)] * len(caps)
        images.append(str(root / "png" / f"{rel}.png"))
        labels.append(rel.split("/", 1)[0])
    out = CaptionSet(images, captions, np.array(ci), labels, "openclipart", split)
    out.skipped = skipped
    return out
