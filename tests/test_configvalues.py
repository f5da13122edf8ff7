"""configvalues.py: TOML values and flags turned into typed fields, with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Config, OutputConfig, ProcessingConfig
from pipeline.configvalues import build_request, build_table, coerce, flag, override
from pipeline.errors import ConfigError


def test_flags_are_named_after_their_key_but_for_three() -> None:
    assert flag("processing.max_workers") == "--max-workers"
    assert flag("processing.shard_size") == "--shard-size"
    assert flag("output.dir") == "--out"
    assert flag("input.path") == "--input"
    assert flag("processing.rate_limit") == "--rate"


@pytest.mark.parametrize(
    ("default", "value", "expected"),
    [(True, False, False), (3, 7, 7), (1.5, 2, 2.0), (Path("a"), "b", Path("b")), ("x", "y", "y")],
)
def test_a_value_of_the_default_s_type_is_taken(
    default: object, value: object, expected: object
) -> None:
    got = coerce("k", default, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("default", "value", "rule"),
    [
        (True, 1, "must be true or false"),
        (3, True, "must be a whole number"),
        (3, 2.5, "must be a whole number"),
        (1.5, float("inf"), "must be a finite number"),
        (1.5, "2", "must be a number"),
        (Path("a"), "", "must be a non-empty path"),
        ("x", 3, "must be a string"),
    ],
)
def test_a_value_of_another_type_is_refused(default: object, value: object, rule: str) -> None:
    with pytest.raises(ConfigError) as caught:
        coerce("c.toml: [t] k", default, value)
    assert str(caught.value) == f"c.toml: [t] k = {value!r}: {rule}"


def test_a_table_resolves_relative_paths_from_the_file_s_folder(tmp_path: Path) -> None:
    table = build_table("c.toml", "processing", ProcessingConfig, {"max_workers": 4}, tmp_path)
    assert table == ProcessingConfig(max_workers=4)
    output = build_table("c.toml", "output", OutputConfig, {}, tmp_path)
    assert output.dir == tmp_path / "out"
    with pytest.raises(ConfigError, match=r"unknown key \[output\] dri \(keys: dir, excel"):
        build_table("c.toml", "output", OutputConfig, {"dri": "x"}, tmp_path)


def test_a_request_field_takes_one_column_or_several() -> None:
    got = build_request("c.toml", {"amazon_spends": " a ", "other_online_spends": ["b", "c"]})
    assert got == {"amazon_spends": ("a",), "other_online_spends": ("b", "c")}
    with pytest.raises(ConfigError, match="not a CardGenius request field"):
        build_request("c.toml", {"amazon": "a"})
    with pytest.raises(ConfigError, match="must map at least one API field"):
        build_request("c.toml", {})


def test_an_override_is_typed_and_named_by_its_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = override(Config(), "output.dir", "elsewhere")
    assert config.output.dir == tmp_path / "elsewhere"  # the working folder, not the file's
    with pytest.raises(ConfigError) as caught:
        override(Config(), "processing.rate_limit", "fast")
    assert str(caught.value) == "--rate = 'fast': must be a number"
