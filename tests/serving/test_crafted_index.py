"""A crafted or damaged index (issue 19): every file of ``index/`` is checked before it is used, and every write
into it goes through ``safe_io`` (no link followed). Exit 2 naming the file and what is wrong, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny_exports import write_export
from translrec_dist.cli import main
from translrec_dist.program import load_recommender


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    final = write_export(tmp_path_factory.mktemp("crafted") / "final", "task=retrieval", "model.pooling=mean")
    rec = load_recommender(final, device="cpu", index=False)
    rec.set_index_options("faiss", None)
    rec.build_index()
    rec.save_index()
    return final


def crafted(indexed: Path, tmp_path: Path, change) -> Path:
    """A copy of the export whose index ``change(index_dir, meta)`` altered."""
    import shutil

    copy = tmp_path / "final"
    shutil.copytree(indexed, copy)
    meta = json.loads((copy / "index" / "items.json").read_text())
    change(copy / "index", meta)
    return copy


def recommend_exit(model: Path, capsys) -> tuple[int, str]:
    rc = main(["recommend", "--model", str(model), "--history", "red apple pie", "--top-k", "3"])
    return rc, capsys.readouterr().err


def rewrite(**fields):
    def change(index: Path, meta: dict):
        meta.update(fields)
        (index / "items.json").write_text(json.dumps(meta))
    return change


def short_ids(index: Path, meta: dict):
    meta["item_ids"], meta["titles"], meta["texts"] = meta["item_ids"][:-3], meta["titles"][:-3], meta["texts"][:-3]
    meta["histories"] = {u: [i for i in h if i in meta["item_ids"]] for u, h in meta["histories"].items()}
    (index / "items.json").write_text(json.dumps(meta))


def garbage(name: str, data: bytes):
    def change(index: Path, meta: dict):
        (index / name).write_bytes(data)
    return change


@pytest.mark.parametrize("change, where, what", [
    (short_ids, "item_embeddings.safetensors", "lists 57 items"),
    (rewrite(titles=5), "items.json", "'titles' is not a list of strings"),
    (rewrite(item_ids=[1, 2, 3]), "items.json", "'item_ids' is not a list of strings"),
    (rewrite(dim=7), "item_embeddings.safetensors", "width 7"),
    (rewrite(dim="32"), "items.json", "'dim' is not a positive integer"),
    (rewrite(backend="os.system"), "items.json", "'backend'"),
    (rewrite(histories={"u": ["no-such-item"]}), "items.json", "'histories'"),
    (garbage("items.json", b"\x00\xff not json"), "items.json", "not JSON"),
    (garbage("item_embeddings.safetensors", b"garbage" * 10), "item_embeddings.safetensors", "not the index's vectors"),
    (garbage("faiss_hnsw.index", b"IHNf" + b"\x07" * 200), "faiss_hnsw.index", "not a faiss index"),
])
def test_a_crafted_index_is_refused_naming_the_file(indexed: Path, tmp_path: Path, capsys, change, where, what):
    model = crafted(indexed, tmp_path, change)
    rc, err = recommend_exit(model, capsys)
    assert rc == 2 and where in err and what in err, err
    assert "Traceback" not in err


def test_an_intact_index_serves(indexed: Path, capsys):
    assert main(["recommend", "--model", str(indexed), "--history", "red apple pie", "--top-k", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_index_does_not_write_through_a_link(indexed: Path, tmp_path: Path, capsys):
    """``translrec index`` with ``index/items.json`` a link to a file elsewhere: refused, that file untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file")

    def link(index: Path, meta: dict):
        (index / "items.json").unlink()
        (index / "items.json").symlink_to(victim)

    model = crafted(indexed, tmp_path, link)
    rc = main(["index", "--model", str(model)])
    err = capsys.readouterr().err
    assert rc == 2 and "items.json" in err and "Traceback" not in err
    assert victim.read_text() == "the user's file"
