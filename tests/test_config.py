"""config.py: defaults, the shipped config.toml, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Config, load_config
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """
[request]
amazon_spends = "a"
other_online_spends = ["b", "c", "a"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_loads_with_contract_values() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.input.path == ROOT / "data" / "sample_users.csv"
    assert config.input.id_column == "user_id"
    assert config.request["other_online_spends"] == (
        "avg_myntra_gmv",
        "avg_ajio_gmv",
        "avg_confirmed_gmv",
    )
    assert config.processing.max_workers == 20
    assert config.processing.processes == 2
    assert config.retry.max_attempts == 4
    assert config.mock.latency_ms == 150.0
    assert config.api.mock is True
    assert config.output.top_n == 3
    assert config.excel_path == ROOT / "out" / "results.xlsx"


def test_defaults_and_value_columns_in_mapping_order(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.value_columns == ("a", "b", "c")
    assert config.processing == Config().processing
    assert config.output.dir == tmp_path / "out"  # relative to the file's folder


def test_overrides_win_and_cli_paths_are_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, MINIMAL + "[processing]\nmax_workers = 8\n")
    config = load_config(
        path,
        {"processing.max_workers": 1, "processing.processes": 1, "output.dir": "elsewhere"},
    )
    assert config.processing.max_workers == 1
    assert config.processing.processes == 1
    assert config.output.dir == tmp_path / "elsewhere"


def test_int_accepted_for_float(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + "[processing]\nrate_limit = 20\n"))
    assert config.processing.rate_limit == 20.0
    assert isinstance(config.processing.rate_limit, float)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("[processing]\nmax_wokers = 3\n", "unknown key [processing] max_wokers"),
        ("[procesing]\n", "unknown table [procesing]"),
        ('[processing]\nmax_workers = "20"\n', "[processing] max_workers = '20': must be a whole"),
        ("[processing]\nmax_workers = 0\n", "[processing] max_workers = 0: must be at least 1"),
        ("[processing]\nprocesses = 4\nmax_workers = 2\n", "processes = 4: must not exceed"),
        ("[processing]\nrate_limit = -1\n", "rate_limit = -1.0: must not be negative"),
        ("[processing]\nadaptive = 1\n", "adaptive = 1: must be true or false"),
        ("[mock]\ncards = 101\n", "cards = 101: must be at most 100"),
        ("[mock]\nerror_rate = 1.5\n", "error_rate = 1.5: must be between 0 and 1"),
        ("[mock]\nfail_share = -0.5\n", "fail_share = -0.5: must be between 0 and 1"),
        ('[api]\nauth = "basic"\n', 'auth = \'basic\': must be "none" or "partner-token"'),
        ('[api]\nmock = false\nurl = "ftp://x"\n', "url = 'ftp://x': must start with http"),
        ("[retry]\nbackoff_initial = 5\nbackoff_max = 1\n", "backoff_max = 1.0: must be at"),
        ('[output]\nexcel = "r.csv"\n', "excel = 'r.csv': must be a file name ending in .xlsx"),
        ('[input]\nid_column = "a"\n', "id_column = 'a': is also mapped in [request]"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, extra: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + extra))
    message = str(info.value)
    assert fragment in message
    assert str(tmp_path / "config.toml") in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "[request] must map at least one API field"),
        ('[request]\namazon = "a"\n', "[request] amazon: not a CardGenius request field"),
        ("[request]\namazon_spends = []\n", "must be a column name or a list of them"),
        ('[request]\namazon_spends = "status"\n', "has the name of a result column"),
        ("[request\n", "not valid TOML"),
    ],
)
def test_bad_request_tables(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert fragment in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"processing.max_workers": 0}, "--max-workers 0: must be at least 1"),
        ({"processing.rate_limit": -2.0}, "--rate -2.0: must not be negative"),
        ({"processing.shard_size": 0}, "--shard-size 0: must be at least 1"),
        (
            {"processing.max_workers": 2, "processing.processes": 3},
            "--processes 3: must not exceed max_workers (2)",
        ),
    ],
)
def test_bad_override_names_the_flag_not_the_file(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL), overrides)
    assert str(info.value) == message  # not "config.toml: [processing] ..."


def test_mock_is_off_unless_asked_for(tmp_path: Path) -> None:
    """A config that names a real url and says nothing about the mock calls the url."""
    text = MINIMAL + '[api]\nurl = "https://partner.example/cg/api/pro"\n'
    assert load_config(write(tmp_path, text)).api.mock is False
    assert Config().api.mock is False


def test_a_column_listed_twice_in_one_field_is_refused(tmp_path: Path) -> None:
    text = '[request]\nother_online_spends = ["b", "c", "b"]\n'
    with pytest.raises(ConfigError, match=r"other_online_spends: column 'b' is listed twice"):
        load_config(write(tmp_path, text))
    # In two fields it is two API fields' worth: allowed.
    load_config(write(tmp_path, '[request]\namazon_spends = "b"\nflipkart_spends = "b"\n'))


def test_top_n_whose_results_pass_excel_is_refused_at_load(tmp_path: Path) -> None:
    # 2 API fields: 8 columns per card, plus id, status, 3 input values and 2: 2,045 cards
    # give 16,367 Results columns (allowed), 2,046 give 16,375, too close to Excel's 16,384.
    assert load_config(write(tmp_path, MINIMAL + "[output]\ntop_n = 2045\n"))
    with pytest.raises(ConfigError, match=r"\[output\] top_n = 2046: gives 16375 Results"):
        load_config(write(tmp_path, MINIMAL + "[output]\ntop_n = 2046\n"))
    with pytest.raises(ConfigError, match=r"top_n = 1000000000000: gives"):
        load_config(write(tmp_path, MINIMAL + "[output]\ntop_n = 1000000000000\n"))


@pytest.mark.parametrize(
    "text",
    [
        '[request]\namazon_spends = "top1_card_id"\n',
        '[request]\namazon_spends = ["a", "cards_returned"]\n',
        '[input]\nid_column = "top3_amazon_spends_savings"\n[request]\namazon_spends = "a"\n',
        '[input]\nid_column = "error"\n[request]\namazon_spends = "a"\n',
    ],
)
def test_input_columns_named_like_result_columns_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="has the name of a result column; rename it"):
        load_config(write(tmp_path, text))


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        config.processing.max_workers = 3  # type: ignore[misc]
