"""`imagexplore retrieve`: paths that resolve from any directory, the times in stats.json, bad query files,
older indexes, flag spellings and ranges, and a command line that imports nothing heavy (issue 10, 10-12).

A tiny folder (4 shapes scenes of 48 px and one broken file) and timm's untrained ``test_efficientnet`` (weights
saved once to a file) keep the CNN cheap; the index is built once, through the command line, with relative paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image

from helpers import single_thread
from imagexplore import cli
from imagexplore.data.shapes import ShapesWorld
from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval.api import Index, ShardedSearch

BACKBONE = "timm:test_efficientnet"


def run_main(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, expected):
    lines = err.strip().splitlines()
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, (rc, err)
    assert expected in lines[0], lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(root, index dir): `retrieve build --images photos --out idx` run in ``root`` with relative paths."""
    root = tmp_path_factory.mktemp("cwd")
    (root / "photos").mkdir()
    world = ShapesWorld(seed=0, size=48)
    for i in range(4):
        Image.fromarray(world.view(i, 0)["image"]).save(root / "photos" / f"s{i}.png")
    (root / "photos" / "broken.jpg").write_bytes(b"not a jpeg")
    torch.manual_seed(0)
    torch.save(timm.create_model("test_efficientnet", pretrained=False).state_dict(), root / "w.pt")
    (root / "cfg.yaml").write_text("k: 2\npoints_per_word: 1\n")
    here = os.getcwd()
    os.chdir(root)
    try:
        argv = ["retrieve", "build", "--images", "photos", "--out", "idx", "--config", "cfg.yaml"]
        argv += ["--backbone", BACKBONE, "--weights", "w.pt", "--device", "cpu", "--json"]
        with single_thread():
            assert cli.main(argv) == 0
    finally:
        os.chdir(here)
    return root, root / "idx"


def test_paths_resolve_from_any_directory(built, tmp_path, monkeypatch, capsys):
    root, idx = built
    capsys.readouterr()
    assert json.loads((idx / "paths.json").read_text()) == {"relative_to": "index", "version": 2}
    assert json.loads((idx / "images.json").read_text())[0] == "../photos/s0.png"

    monkeypatch.chdir(root)  # where the build ran: the same relative paths as before
    argv = ["retrieve", "search", "--index", "idx", "photos/s1.png", "--top", "2", "--device", "cpu"]
    with single_thread():
        rc, out, _ = run_main([*argv, "--json"], capsys)
    assert rc == 0
    res = json.loads(out)
    assert [set(r) for r in res] == [{"query", "results"}] and res[0]["query"] == "photos/s1.png"
    assert res[0]["results"][0]["path"] == "photos/s1.png"

    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    rel = os.path.relpath(idx, elsewhere)
    query = str(root / "photos" / "s1.png")
    with single_thread():
        rc, out, _ = run_main(["retrieve", "search", "--index", rel, query, "--topk", "3", "--json"], capsys)
    assert rc == 0
    hits = json.loads(out)[0]["results"]
    assert len(hits) == 3 and all(Path(h["path"]).is_file() for h in hits)
    assert Path(hits[0]["path"]).resolve() == Path(query).resolve()
    with single_thread():  # an absolute --index gives absolute paths
        rc, out, _ = run_main(
            ["retrieve", "search", "--index", str(idx), query, "--top", "3", "--json"], capsys
        )
    assert [h["path"] for h in json.loads(out)[0]["results"]][0] == query
    assert Index.load(idx).skipped == [str(root / "photos" / "broken.jpg")]


def test_stats_record_extract_and_index_time(built):
    _, idx = built
    stats = json.loads((idx / "stats.json").read_text())
    assert (
        stats["build_seconds"] == stats["index_seconds"]
    )  # build_seconds keeps its meaning: the index alone
    assert stats["extract_seconds"] > 0
    assert stats["total_seconds"] == pytest.approx(
        stats["extract_seconds"] + stats["index_seconds"], abs=2e-3
    )
    assert stats["skipped"] == ["../photos/broken.jpg"]
    loaded = Index.load(idx)
    assert loaded.stats["extract_seconds"] == stats["extract_seconds"]
    assert Index.merge([loaded]).stats["extract_seconds"] == stats["extract_seconds"]


def _rewrite(idx: Path, name: str, content: bytes | None) -> None:
    """Change (None: remove) a file of a saved index and its entry in format.json, as another release would."""
    fmt = json.loads((idx / "format.json").read_text())
    if content is None:
        (idx / name).unlink()
        fmt["files"].pop(name)
    else:
        (idx / name).write_bytes(content)
        fmt["files"][name] = hashlib.sha256(content).hexdigest()
    (idx / "format.json").write_text(json.dumps(fmt))


def test_older_index_reads_as_before_and_merge_converts_it(built, tmp_path, monkeypatch, capsys, caplog):
    import shutil

    root, idx = built
    old = tmp_path / "old"
    shutil.copytree(idx, old)
    names = json.loads((idx / "images.json").read_text())
    cwd_relative = [os.path.relpath(os.path.normpath(idx / n), root) for n in names]
    _rewrite(old, "images.json", (json.dumps(cwd_relative) + "\n").encode())
    _rewrite(old, "paths.json", None)
    monkeypatch.chdir(root)
    loaded = Index.load(old)
    assert list(loaded.paths) == cwd_relative == [f"photos/s{i}.png" for i in range(4)]
    assert "older imagexplore" in caplog.text
    mapped = Index.load(old, mmap=True)  # every release wrote plain .npy files: older indexes map too
    assert mapped.paths == loaded.paths
    with single_thread():
        queries = [root / "photos" / f"s{i}.png" for i in range(4)]
        assert mapped.search_many(queries, k=4) == loaded.search_many(queries, k=4)
    assert run_main(["retrieve", "merge", "--out", str(tmp_path / "new"), str(old)], capsys)[0] == 0
    monkeypatch.chdir(tmp_path)
    assert all(Path(p).is_file() for p in Index.load(tmp_path / "new").paths)

    _rewrite(old, "paths.json", b'{"relative_to": "moon", "version": 9}\n')
    rc, _, err = run_main(
        ["retrieve", "search", "--index", str(old), str(root / "photos" / "s0.png")], capsys
    )
    one_line_error(rc, err, "paths.json says")


def test_bad_queries_fail_or_skip(built, tmp_path, capsys):
    root, idx = built
    good, bad = str(root / "photos" / "s2.png"), str(root / "cfg.yaml")
    rc, _, err = run_main(["retrieve", "search", "--index", str(idx), good, bad], capsys)
    one_line_error(rc, err, f"cannot read image {bad}")
    rc, _, err = run_main(["retrieve", "search", "--index", str(idx), str(tmp_path)], capsys)
    one_line_error(rc, err, "holds no image files (searched recursively)")
    argv = ["retrieve", "search", "--index", str(idx), good, bad, "--on-bad-file", "skip", "--json"]
    with single_thread():
        rc, out, err = run_main(argv, capsys)
    assert rc == 0 and [r["query"] for r in json.loads(out)] == [good]
    assert err.strip() == f"imagexplore: skipped 1 of 2 query images (unreadable): {bad}"
    rc, _, err = run_main([*argv[:4], bad, "--on-bad-file", "skip"], capsys)
    one_line_error(rc, err, "none of the 1 query images could be read")
    with single_thread():  # a folder stands for its images; the broken one stops the default
        rc, _, err = run_main(["retrieve", "search", "--index", str(idx), str(root / "photos")], capsys)
    one_line_error(rc, err, "broken.jpg")


def test_build_on_bad_file_fail_and_busy_out(built, tmp_path, capsys):
    root, _ = built
    argv = ["retrieve", "build", "--images", str(root / "photos"), "--out", str(tmp_path / "i")]
    argv += ["--backbone", BACKBONE, "--weights", str(root / "w.pt"), "--device", "cpu", "--k", "2", "--json"]
    with single_thread():
        rc, _, err = run_main([*argv, "--on-bad-file", "fail"], capsys)
    one_line_error(rc, err, "broken.jpg")
    assert not (tmp_path / "i").exists()
    (tmp_path / "i").mkdir()  # an empty folder is fine as --out
    (tmp_path / "cfg.yaml").write_text("kk: 1\n")
    rc, _, err = run_main([*argv, "--config", str(tmp_path / "cfg.yaml")], capsys)
    one_line_error(rc, err, "kk")  # the config is read before any image is


def test_library_refuses_out_of_range(built):
    from imagexplore.retrieval.evaluate import run_eval

    root, idx = built
    index = Index.load(idx)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="search k"):
            index.search_many([], k=k)
    with pytest.raises(ConfigError, match="batch_size"):
        Index.build(root / "photos", batch_size=0, progress=False)
    with pytest.raises(ConfigError, match="distractors"):
        run_eval("shapes", root / "shapes", distractors=-1)
    with pytest.raises(ConfigError, match="patch_size"):
        run_eval("shapes", root / "shapes", patch_size=8)
    with pytest.raises(ConfigError, match="patches"):
        run_eval("shapes", root / "shapes", patches=3)
    with pytest.raises(DataError, match="is a file"):
        Index.load(root / "cfg.yaml")


def test_every_retrieve_option_has_help_and_cli_imports_nothing_heavy():
    import argparse

    parser = cli.build_parser()
    group = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["retrieve"]
    commands = next(a for a in group._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"extract", "build", "merge", "search", "serve-shards", "eval"}
    for name, p in commands.items():
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, (name, action.dest)
    code = (
        "import sys, imagexplore.retrieval.cli; print(sorted({'torch', 'faiss', 'timm'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parent.parent)},
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_search_mmap_gives_the_same_names_and_scores(built, monkeypatch, capsys):
    """`retrieve search --mmap` (and `ShardedSearch.load(mmap=True)`) map the index and find exactly what
    the index read into memory finds; --mmap with Ray is refused in one line."""
    root, _ = built
    monkeypatch.chdir(root)
    argv = ["retrieve", "search", "--index", "idx", "photos", "--top", "3", "--device", "cpu", "--json"]
    argv += ["--on-bad-file", "skip"]
    with single_thread():
        rc, plain, _ = run_main(argv, capsys)
        assert rc == 0
        rc, mapped, _ = run_main([*argv, "--mmap"], capsys)
        assert rc == 0
        assert json.loads(mapped) == json.loads(plain) and len(json.loads(plain)) == 4
        queries = [f"photos/s{i}.png" for i in range(4)]
        sharded = ShardedSearch.load(["idx"], mmap=True)
        assert sharded.search_many(queries, k=3) == Index.load("idx").search_many(queries, k=3)
    rc, _, err = run_main([*argv, "--mmap", "--backend", "ray"], capsys)
    one_line_error(rc, err, "--mmap")


@pytest.fixture(scope="module")
def tree(built, tmp_path_factory):
    """A nested folder of 14 tiny images (and files and folders that are not images, or hidden)."""
    root, _ = built
    top = tmp_path_factory.mktemp("tree") / "photos"
    world = ShapesWorld(seed=1, size=40)
    names = [
        "a.png",
        "a/x.png",
        "a/b/y.jpg",
        "a b/z.png",
        "A.PNG",
        "b.jpeg",
        "b/c/d/e.png",
        "b/c.png",
        "b_1.png",
    ]
    names += ["c/1.png", "c/10.png", "c/2.png", "c/2/2.png", "z.bmp"]
    for i, name in enumerate(names):
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(world.view(i % 6, i // 6)["image"]).save(top / name)
    (top / "notes.txt").write_text("x")
    (top / ".hidden").mkdir()
    Image.fromarray(world.view(0, 0)["image"]).save(top / ".hidden" / "h.png")
    Image.fromarray(world.view(0, 0)["image"]).save(top / "c" / "._x.png")
    return root, top


def _saved(idx: Path) -> dict:
    """Every file of a saved index by its sha256, but stats.json (times) and format.json (which lists it)."""
    files = json.loads((idx / "format.json").read_text())["files"]
    return {name: digest for name, digest in files.items() if name != "stats.json"}


def test_walk_lists_lazily_in_the_order_of_list_images(tree):
    from imagexplore.data.images import list_images
    from imagexplore.retrieval.resumable import walk_images

    _, top = tree
    walked = walk_images(top)
    assert next(walked) == top / "A.PNG"  # a generator: nothing listed up front
    assert [top / "A.PNG", *walked] == list_images(top) and len(list_images(top)) == 14


def test_build_resumes_after_a_kill_and_equals_an_uninterrupted_build(tree, tmp_path, monkeypatch, capsys):
    """`retrieve build` killed after 2 chunks of 4 images (--chunk-size 3 rounded up to --batch-size 2) and run
    again resumes after them and saves the same index, file for file, as a clean build; the checkpoint
    (OUT.partial) is gone once the index is saved, and a resume with other settings is refused."""
    import imagexplore.retrieval.api as api

    root, top = tree
    argv = ["retrieve", "build", "--images", str(top), "--config", str(root / "cfg.yaml")]
    argv += ["--backbone", BACKBONE, "--weights", str(root / "w.pt"), "--device", "cpu", "--json"]
    argv += ["--batch-size", "2", "--chunk-size", "3"]
    with single_thread():
        assert run_main([*argv, "--out", str(tmp_path / "clean")], capsys)[0] == 0
        assert not (tmp_path / "clean.partial").exists()
        whole = Index.build(
            top,
            str(root / "cfg.yaml"),
            backbone=BACKBONE,
            weights=root / "w.pt",
            batch_size=2,
            progress=False,
        )
        whole.save(tmp_path / "in_memory")  # the build without a checkpoint gives the same index
        assert _saved(tmp_path / "in_memory") == _saved(tmp_path / "clean")

        real, calls = api.extract_batched, []

        def killed_after_two(extractor, files, *args, **kwargs):
            calls.append([p.name for p in files])
            if len(calls) > 2:
                raise KeyboardInterrupt  # what Ctrl-C (or a kill the process survives to report) raises
            return real(extractor, files, *args, **kwargs)

        monkeypatch.setattr(api, "extract_batched", killed_after_two)
        rc, _, _ = run_main([*argv, "--out", str(tmp_path / "resumed")], capsys)
        assert rc != 0 and not (tmp_path / "resumed").exists()
        partial = tmp_path / "resumed.partial"
        assert sorted(p.name for p in partial.glob("chunk_*.json")) == [
            "chunk_000000.json",
            "chunk_000001.json",
        ]
        assert [len(c) for c in calls] == [4, 4, 4]

        rc, _, err = run_main([*argv, "--out", str(tmp_path / "resumed"), "--batch-size", "1"], capsys)
        one_line_error(rc, err, "batch_size")  # other settings: refused, the checkpoint kept

        calls.clear()
        monkeypatch.setattr(api, "extract_batched", lambda *a, **k: (calls.append(a[1]), real(*a, **k))[1])
        assert run_main([*argv, "--out", str(tmp_path / "resumed")], capsys)[0] == 0
    assert [len(c) for c in calls] == [4, 2]  # only the chunks not written before
    assert _saved(tmp_path / "resumed") == _saved(tmp_path / "clean")
    assert not partial.exists()
    for name in _saved(tmp_path / "clean"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


def test_resumed_build_checks_the_folder_and_on_bad_file(tree, tmp_path, monkeypatch):
    """A chunk written before is reused only for the same files; skipped files of a run with
    on_bad_file="skip" fail a resume with "fail"; the library leaves the checkpoint in place; a resume from
    another directory names the images as given to it."""
    import shutil

    root, top = tree
    photos = tmp_path / "photos"
    shutil.copytree(top, photos)
    (photos / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    kw = {"backbone": BACKBONE, "weights": root / "w.pt", "progress": False, "chunk_size": 5}
    cfg = str(root / "cfg.yaml")
    with single_thread():
        index = Index.build(photos, cfg, checkpoint=tmp_path / "ck", **kw)
        assert len(index) == 14 and index.skipped == [str(photos / "a" / "broken.jpg")]
        assert (tmp_path / "ck" / "chunk_000002.json").exists()
        with pytest.raises(DataError, match="broken.jpg"):
            Index.build(photos, cfg, checkpoint=tmp_path / "ck", on_bad_file="fail", **kw)
        again = Index.build(photos, cfg, checkpoint=tmp_path / "ck", **kw)  # all chunks read back
        assert again.paths == index.paths and again.inverted.stats == {
            **index.inverted.stats,
            "build_seconds": again.inverted.stats["build_seconds"],
        }
        monkeypatch.chdir(tmp_path)
        here = Index.build("photos", cfg, checkpoint=tmp_path / "ck2", **kw)
        (tmp_path / "sub").mkdir()
        monkeypatch.chdir(tmp_path / "sub")
        there = Index.build("../photos", cfg, checkpoint=tmp_path / "ck2", **kw)  # every chunk read back
        assert list(there.paths) == [os.path.join("..", p) for p in here.paths]
        assert there.skipped == [os.path.join("..", "photos", "a", "broken.jpg")]
        (photos / "a" / "0.png").write_bytes((photos / "a.png").read_bytes())
        with pytest.raises(DataError, match="changed"):
            Index.build(photos, cfg, checkpoint=tmp_path / "ck", **kw)


def test_commands_that_run_the_network_keep_freed_memory(monkeypatch):
    """`retrieve extract | build | eval` set glibc's malloc to reuse freed blocks (`reuse_freed_memory`: 1.12x
    faster forward passes, bench/bench_kernels.py); merge, search and serve-shards leave it as it is."""
    import sys
    from types import SimpleNamespace

    from imagexplore import clitools
    from imagexplore.retrieval import cli as rcli

    if sys.platform.startswith("linux"):
        assert clitools.reuse_freed_memory() is True
    called = []
    monkeypatch.setattr(rcli, "reuse_freed_memory", lambda: called.append(True))
    for cmd in ("extract", "build", "eval", "merge", "search", "serve-shards"):
        monkeypatch.setattr(rcli, f"_{cmd.replace('-', '_')}", lambda args: 0)
    for cmd in ("merge", "search", "serve-shards"):
        assert rcli.run(SimpleNamespace(cmd=cmd)) == 0
    assert called == []
    for cmd in ("extract", "build", "eval"):
        assert rcli.run(SimpleNamespace(cmd=cmd)) == 0
    assert called == [True] * 3
