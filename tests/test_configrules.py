"""configrules.py: the table of rules, its order, and how a refusal is worded."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.config import Config, MockConfig, OutputConfig, ProcessingConfig
from pipeline.configrules import RULES, check, parse_age, value_of
from pipeline.errors import ConfigError

GOOD = Config(request={"amazon_spends": ("a",)})


def refusal(config: Config, flags: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        check("c.toml", config, flags or {})
    return str(caught.value)


def test_a_good_config_breaks_no_rule() -> None:
    check("c.toml", GOOD, {})


def test_every_rule_names_a_key_of_the_config() -> None:
    for rule in RULES:
        value_of(GOOD, rule.key)  # AttributeError for a key that is not there


def test_the_first_broken_rule_in_the_table_is_the_one_reported() -> None:
    # Both break a rule; shard_size comes first in the table, the mock's kind much later.
    both = replace(
        GOOD,
        processing=ProcessingConfig(shard_size=0),
        mock=MockConfig(limit_kind="leaky"),
    )
    assert refusal(both) == "c.toml: [processing] shard_size = 0: must be at least 1"
    kind = refusal(replace(GOOD, mock=MockConfig(limit_kind="leaky")))
    assert kind == (
        'c.toml: [mock] limit_kind = \'leaky\': must be one of "sliding", "fixed", "token-bucket"'
    )


def test_a_value_from_a_flag_is_named_by_the_flag() -> None:
    config = replace(GOOD, processing=ProcessingConfig(max_workers=2, processes=3))
    flags = {"processing.processes": "--processes"}
    assert refusal(config, flags) == "--processes 3: must not exceed max_workers (2)"
    assert refusal(config) == "c.toml: [processing] processes = 3: must not exceed max_workers (2)"


def test_a_rule_across_keys_reads_the_other_key() -> None:
    schedule = MockConfig(rate_schedule="20:30")
    assert refusal(replace(GOOD, mock=schedule)).endswith("needs rate_limit > 0 to start from")
    check("c.toml", replace(GOOD, mock=replace(schedule, rate_limit=10.0)), {})


def test_a_result_column_name_is_worded_whole_and_after_the_width_rule() -> None:
    named = replace(GOOD, request={"amazon_spends": ("status",)})
    assert refusal(named).startswith(
        "c.toml: [request]: input column 'status' has the name of a result column; rename it"
    )
    # A top_n too wide for a sheet is reported first: the names rule counts its columns.
    wide = replace(named, output=OutputConfig(top_n=10_000))
    assert "gives 70005 Results columns" in refusal(wide)


def test_the_url_is_not_checked_when_the_mock_answers() -> None:
    config = replace(GOOD, api=replace(GOOD.api, url="not a url"))
    assert refusal(config).endswith("[api] url = 'not a url': must start with http:// or https://")
    check("c.toml", replace(config, api=replace(config.api, mock=True)), {})


def test_ages() -> None:
    assert [parse_age(a) for a in ("0", "7d", "36h", " 30M ", "90s")] == [
        0,
        604800,
        129600,
        1800,
        90,
    ]
    for bad in ("", "7", "d", "-1d", "1.5h", "7w"):
        with pytest.raises(ValueError, match="is not an age like"):
            parse_age(bad)
    config = replace(GOOD, cache=replace(GOOD.cache, max_age="7w"))
    assert refusal(config) == (
        'c.toml: [cache] max_age = \'7w\': not an age like "30d", "12h", "30m" or "0"'
    )
