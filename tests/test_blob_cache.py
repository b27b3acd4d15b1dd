"""The verified compiled-model cache: round trip, damage found and removed, no half files."""

import logging

from l2s_engine.blob_cache import MAGIC, BlobCache, entry_key


def test_round_trip_and_keys(tmp_path):
    cache = BlobCache(tmp_path / "c")
    key = entry_key("a" * 64, "bf16", "2026.4.1")
    assert key != entry_key("a" * 64, "fp32", "2026.4.1") and len(key) == 40
    assert cache.load(key) is None
    assert cache.store(key, b"compiled bytes")
    assert cache.load(key) == b"compiled bytes"
    assert cache.path(key).read_bytes().startswith(MAGIC)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [f"{key}.blob"]  # no temporary file left


def test_a_damaged_or_foreign_entry_is_removed_and_reported(tmp_path, caplog):
    cache = BlobCache(tmp_path)
    cache.store("k", bytes(range(256)) * 100)
    data = bytearray(cache.path("k").read_bytes())
    data[len(data) // 2] ^= 0xFF
    cache.path("k").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert cache.load("k") is None
    assert not cache.path("k").exists() and "damaged compiled model" in caplog.text
    cache.path("x").write_bytes(b"an OpenVINO blob from elsewhere")
    assert cache.load("x") is None and not cache.path("x").exists()
    cache.store("t", b"payload")
    cache.path("t").write_bytes(cache.path("t").read_bytes()[:-3])  # cut short
    assert cache.load("t") is None


def test_a_folder_that_cannot_be_made_turns_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = BlobCache(blocker / "sub")
    assert not cache.usable and "cannot create" in cache.problem


def test_temporary_files_of_a_killed_writer_go_once_an_hour_old(tmp_path):
    import os
    import time

    old, fresh = tmp_path / ".k.blob.abc.partial", tmp_path / ".j.blob.def.partial"
    for path in (old, fresh):
        path.write_bytes(b"half")
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    BlobCache(tmp_path)
    assert not old.exists() and fresh.exists()  # a writer busy now keeps its file
