from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from llava_mixes.embedding.cache import store_schema
from llava_mixes.errors import CacheWriteError
from llava_mixes.store import SET_ASIDE_DIR, TEMP_PREFIX, ShardStore

SCHEMA = pa.schema([("key", pa.string()), ("value", pa.int64())])


def test_committed_rows_are_visible_to_a_new_reader(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, SCHEMA)
    with store.writer(flush_rows=2) as writer:
        for number in range(5):
            writer.add({"key": f"k{number}", "value": number})
    reader = ShardStore(tmp_path, SCHEMA)
    assert len(reader) == 5
    assert reader.take(["k4", "k0", "k2"]).column("value").to_pylist() == [4, 0, 2]
    assert reader.missing(["k1", "zz", "zz"]) == ["zz"]
    assert len(list(tmp_path.glob("*.arrow"))) == 3


def test_first_written_value_wins_and_compaction_keeps_it(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, SCHEMA)
    store.commit(pa.table({"key": ["a"], "value": [1]}))
    store.commit(pa.table({"key": ["a", "b"], "value": [2, 3]}))
    assert ShardStore(tmp_path, SCHEMA).take(["a"]).column("value").to_pylist() == [1]
    assert store.compact() == 2
    compacted = ShardStore(tmp_path, SCHEMA)
    assert compacted.take(["a", "b"]).column("value").to_pylist() == [1, 3]
    assert len(list(tmp_path.glob("*.arrow"))) == 1


def test_partial_files_are_ignored_and_corrupt_ones_set_aside(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, SCHEMA)
    path = store.commit(pa.table({"key": ["a"], "value": [1]}))
    (tmp_path / f"{TEMP_PREFIX}half.arrow").write_bytes(path.read_bytes()[:40])
    (tmp_path / "99999-corrupt.arrow").write_bytes(path.read_bytes()[:-30])
    reader = ShardStore(tmp_path, SCHEMA)
    assert len(reader) == 1
    assert reader.take(["a"]).column("value").to_pylist() == [1]
    assert [repair.file for repair in reader.repairs] == [str(tmp_path / "99999-corrupt.arrow")]
    assert (tmp_path / SET_ASIDE_DIR / "99999-corrupt.arrow").exists()
    assert (tmp_path / f"{TEMP_PREFIX}half.arrow").exists()


def test_a_failed_commit_raises_cache_write_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, SCHEMA)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
    try:
        with pytest.raises(CacheWriteError, match=rf"{tmp_path} \(File too large\)"):
            store.commit(pa.table({"key": [f"k{number}" for number in range(500)], "value": list(range(500))}))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert list(tmp_path.iterdir()) == []


def test_a_writer_killed_mid_write_leaves_only_whole_correct_entries(tmp_path: Path) -> None:
    child = textwrap.dedent(
        f"""
        import numpy as np, pyarrow as pa
        from pathlib import Path
        from llava_mixes.embedding.cache import store_schema
        from llava_mixes.store import ShardStore
        store = ShardStore(Path({str(tmp_path)!r}), store_schema(64))
        with store.writer(flush_rows=50) as writer:
            number = 0
            while True:
                vector = (np.arange(64) * (number % 997) % 251).astype(np.float16)
                writer.add({{"key": f"img{{number}}", "vector": vector.tolist(), "error": None}})
                number += 1
        """
    )
    process = subprocess.Popen([sys.executable, "-c", child])
    deadline = time.time() + 60
    # Finished shards only: pathlib's glob also matches the hidden temporary file of the shard being written.
    while len([path for path in tmp_path.glob("*.arrow") if not path.name.startswith(TEMP_PREFIX)]) < 3 and (
        time.time() < deadline
    ):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    store = ShardStore(tmp_path, store_schema(64))
    assert len(store) >= 150
    keys = sorted(store._index)
    vectors = store.take(keys).column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    for key, vector in zip(keys, vectors.reshape(len(keys), 64), strict=True):
        number = int(key[3:])
        assert np.array_equal(vector, (np.arange(64) * (number % 997) % 251).astype(np.float16))


def test_gather_equals_take_across_shards_chunks_and_repeats(tmp_path: Path) -> None:
    schema = pa.schema([("key", pa.string()), ("vector", pa.list_(pa.float16(), 3))])
    store = ShardStore(tmp_path, schema)
    rng = np.random.default_rng(0)
    keys = [f"k{number}" for number in range(40)]
    vectors = rng.standard_normal((40, 3)).astype(np.float16)

    def table(part: slice) -> pa.Table:
        flat = pa.array(vectors[part].reshape(-1), type=pa.float16())
        return pa.table({"key": keys[part], "vector": pa.FixedSizeListArray.from_arrays(flat, 3)})

    store.commit(table(slice(0, 15)))
    # One shard written as several record batches, one of them sliced: each is its own chunk.
    store.commit(pa.concat_tables([table(slice(15, 22)), table(slice(22, 40)).slice(0, 18)]))
    reader = ShardStore(tmp_path, schema)
    wanted = ["k39", "k0", "k16", "k16", "k21", "k22", "k3"]
    gathered = reader.gather(wanted, "vector")
    taken = reader.take(wanted, ["vector"]).column("vector").combine_chunks().flatten().to_numpy()
    assert gathered.dtype == np.float16 and gathered.shape == (7, 3)
    assert np.array_equal(gathered, taken.reshape(7, 3))
    assert np.array_equal(gathered, vectors[[39, 0, 16, 16, 21, 22, 3]])
    assert reader.gather([], "vector").shape == (0, 3)


def test_gather_reads_a_shard_with_a_null_list_through_take(tmp_path: Path) -> None:
    schema = pa.schema([("key", pa.string()), ("vector", pa.list_(pa.float32(), 2))])
    store = ShardStore(tmp_path, schema)
    vector = pa.array([[1.0, 2.0], None, [5.0, 6.0]], type=pa.list_(pa.float32(), 2))
    store.commit(pa.table({"key": ["a", "b", "c"], "vector": vector}))
    gathered = ShardStore(tmp_path, schema).gather(["c", "a"], "vector")
    assert gathered.tolist() == [[5.0, 6.0], [1.0, 2.0]]
