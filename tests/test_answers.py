"""The identity of a request body and the run's answer store, on real tables and a real file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from pipeline import schema
from pipeline.api import cardgenius
from pipeline.state import answers
from pipeline.state.answers import RELEASED, AnswerCache, body_keys, find_repeated, read_repeated
from pipeline.state.store import write_parquet_atomic

MAPPING = (("amazon_spends", ("a",)), ("flipkart_spends", ("f", "g")))


def table(rows: list[tuple[float, float, float, str | None]]) -> pa.Table:
    a, f, g, invalid = zip(*rows, strict=True)
    return pa.table(
        {
            schema.ROW: list(range(len(rows))),
            "a": list(a),
            "f": list(f),
            "g": list(g),
            schema.INVALID: list(invalid),
        }
    )


def test_a_key_is_the_hash_of_the_bytes_sent_and_never_changes() -> None:
    body = cardgenius.build_body({"flipkart_spends": (60.0, 40.0), "amazon_spends": (2.675,)})
    data = cardgenius.body_bytes(body)
    assert data == b'{"amazon_spends":2.67,"flipkart_spends":100}'  # Python's rounding
    assert cardgenius.body_key(data) == int(hashlib.blake2b(data, digest_size=16).hexdigest(), 16)
    # Written down once: a key kept in a store must mean the same body after any upgrade.
    assert cardgenius.key_text(cardgenius.body_key(data)) == "31816230841dc52dc511e107de81d9d5"


def test_rows_share_a_key_exactly_when_they_send_the_same_bytes() -> None:
    rows = [
        (2.675, 60.0, 40.0, None),  # sends 2.67 (Python rounds the float 2.675 down)
        (2.68, 100.0, 0.0, None),  # sends 2.68: another body, whatever polars' rounding says
        (2.67, 0.0, 100.0, None),  # the same bytes as the first row
        (1.0, 0.0, 0.0, "not a number"),
    ]
    keys = body_keys(table(rows), MAPPING)
    assert keys[0] == keys[2] and keys[0] != keys[1] and keys[3] is None
    bodies = [
        {"amazon_spends": 2.67, "flipkart_spends": 100},
        {"amazon_spends": 2.68, "flipkart_spends": 100},
    ]
    assert keys[:2] == [cardgenius.body_key(cardgenius.body_bytes(b)) for b in bodies]
    # The mapping's order does not change the bytes, so not the key either.
    assert body_keys(table(rows), MAPPING[::-1]) == keys


def test_a_row_is_sent_as_the_bytes_its_key_was_made_of() -> None:
    rows = [(2.675, 60.0, 40.0, None), (1.0, 0.0, 0.0, "not a number")]
    sent = answers.bodies(table(rows), MAPPING)
    body = {"amazon_spends": 2.67, "flipkart_spends": 100}
    assert sent == [cardgenius.body_bytes(body), None]
    assert sent[0] is not None
    assert body_keys(table(rows), MAPPING) == [cardgenius.body_key(sent[0]), None]


def test_repeated_bodies_are_found_by_key_with_their_owner(tmp_path: Path) -> None:
    first = tmp_path / "shard-00000.parquet"
    second = tmp_path / "shard-00001.parquet"
    write_parquet_atomic(table([(2.675, 100.0, 0.0, None), (2.68, 100.0, 0.0, None)]), first)
    later = table([(2.67, 50.0, 50.0, None), (2.69, 0.0, 0.0, None)])
    write_parquet_atomic(later.set_column(0, schema.ROW, pa.array([2, 3])), second)
    unique, repeated = find_repeated([first, second], MAPPING, tmp_path / "repeated.parquet")
    assert (unique, repeated) == (3, 1)
    key = body_keys(table([(2.67, 100.0, 0.0, None)]), MAPPING)[0]
    assert read_repeated(tmp_path / "repeated.parquet") == {key: (0, 0)}


def test_a_real_answer_replaces_a_released_mark_but_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    AnswerCache.create(path)
    store, other = AnswerCache(path), AnswerCache(path)  # two processes' connections
    answer = {schema.STATUS: schema.OK, schema.HTTP_STATUS: 200}
    store.put_many({1: RELEASED, 2: answer})
    other.put_many({1: answer, 2: {schema.STATUS: schema.NO_CARDS, schema.HTTP_STATUS: 200}})
    assert store.get_many([1, 2, 3]) == {1: answer, 2: answer}
    store.put_many({1: RELEASED})  # a late release never hides an answer
    assert other.get(1) == answer
    store.close()
    other.close()
