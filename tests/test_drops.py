"""The local drop: listing, reading without following links, publishing without replacing."""

from __future__ import annotations

import os

import pytest

from audtools.drops import LocalDrop, open_drop


def test_listing_names_sizes_and_links(tmp_path):
    (tmp_path / "b.sync").write_bytes(b"12345")
    (tmp_path / "a.info").write_bytes(b"{}")
    (tmp_path / "sub").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_bytes(b"secret")
    os.symlink(outside, tmp_path / "c.sync")
    entries = LocalDrop(tmp_path).list()
    assert [(e.name, e.is_link) for e in entries] == [
        ("a.info", False),
        ("b.sync", False),
        ("c.sync", True),
    ]
    assert entries[1].size == 5


def test_open_refuses_a_link(tmp_path):
    target = tmp_path / "real"
    target.write_bytes(b"x")
    os.symlink(target, tmp_path / "link.sync")
    drop = LocalDrop(tmp_path)
    with drop.open("real") as fh:
        assert fh.read() == b"x"
    with pytest.raises(OSError):
        drop.open("link.sync")


def test_publish_never_replaces_a_file(tmp_path):
    drop = LocalDrop(tmp_path / "out")
    with drop.create("t1") as fh:
        fh.write(b"new")
    (tmp_path / "out" / "final").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        drop.publish("t1", "final")
    assert (tmp_path / "out" / "final").read_bytes() == b"old"
    assert drop.exists("t1")
    drop.publish("t1", "other")
    assert not drop.exists("t1") and drop.read_bytes("other") == b"new"
    with pytest.raises(FileExistsError):
        drop.create("other")
    drop.remove("other")
    drop.remove("other")  # a missing file is not an error
    assert [e.name for e in drop.list()] == ["final"]


def test_relative_location_is_under_the_workspace(tmp_path):
    drop = open_drop("drops/import", base=tmp_path)
    assert isinstance(drop, LocalDrop) and drop.path == tmp_path / "drops/import"
    assert drop.list() == []  # a missing folder lists nothing
