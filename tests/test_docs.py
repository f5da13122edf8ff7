"""The docs say what the code does: README's commands, flags and config keys are the parser's
and the config's, and docs/architecture.md places every module of the package.

Read from the code itself (the argparse parsers, the config dataclasses, the files under
pipeline/), so a flag, key or module added without its line in the docs fails here.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import config as config_module
from pipeline.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _commands(
    parser: argparse.ArgumentParser, prefix: str = "pipeline"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command and sub-command with its parser: ("pipeline cache prune", parser)."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


COMMANDS = dict(_commands(_parser()))


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [f for a in parser._actions for f in a.option_strings if f not in ("-h", "--help")]


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=str)
def test_every_command_and_flag_is_in_the_readme(command: str) -> None:
    if command != "pipeline":
        assert f"`{command}" in README, f"README does not name `{command}`"
    flags = _flags(COMMANDS[command])
    missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", README)]
    assert missing == [], f"{command}: flags missing from README: {missing}"


def test_every_flag_the_readme_names_exists() -> None:
    known = {f for parser in COMMANDS.values() for f in _flags(parser)}
    named = set(re.findall(r"`(--[a-z][a-z-]*)", README))
    # `--flag/--no-flag`: the second spelling follows a slash.
    named |= set(re.findall(r"`--[a-z-]+/(--[a-z][a-z-]*)", README))
    assert named - known == set()


def _config_tables() -> dict[str, type]:
    return dict(config_module._TABLES)


def _readme_keys() -> dict[tuple[str, str], str]:
    """("mock", "cards") -> the default README's config reference gives it ("15")."""
    keys = {}
    for line in README.splitlines():
        match = re.match(r"\| `\[(\w+)\] ([^|]+?)` \| ([^|]+?) \|", line)
        if not match or match.group(2).startswith("<"):
            continue
        table, names, defaults = match.groups()
        names_list = [n.strip(" `") for n in names.split(",")]
        defaults_list = [d.strip(" `") for d in defaults.split(",")]
        assert len(names_list) == len(defaults_list), line
        keys.update({(table, n): d for n, d in zip(names_list, defaults_list, strict=True)})
    return keys


def _plain(value: object) -> str:
    """A default as README writes it, without quotes: 30.0 -> "30", False -> "false"."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[]" if not value else repr(value)
    return str(value)


def test_every_config_key_is_in_the_readme_with_its_default() -> None:
    readme = _readme_keys()
    code = {
        (table, f.name): _plain(f.default)
        for table, cls in _config_tables().items()
        for f in dataclasses.fields(cls)
    }
    assert sorted(set(code) - set(readme)) == [], "config keys missing from README"
    assert sorted(set(readme) - set(code)) == [], "README names keys the config refuses"
    wrong = {
        key: (readme[key], default)
        for key, default in code.items()
        if _plain(_number(readme[key].strip('"'))) != default
    }
    assert wrong == {}, "README default != code default"


def _number(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def test_every_mock_key_is_a_mock_api_flag_with_the_same_default() -> None:
    parser = COMMANDS["pipeline mock-api"]
    helps = {f: a.help or "" for a in parser._actions for f in a.option_strings}
    for f in dataclasses.fields(config_module.MockConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in helps, f"[mock] {f.name} has no mock-api {flag}"
        said = re.search(r"\(default: ([^)]+)\)", helps[flag])
        if said and said.group(1) != "none":
            assert said.group(1) == _plain(f.default), flag


def _modules() -> list[str]:
    package = ROOT / "pipeline"
    return sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    )


def _placed(module: str) -> bool:
    """Named with its folder (`run/todo.py`), or by its name in a map row of its folder."""
    if re.search(rf"[`/]{re.escape(module)}`", ARCHITECTURE) or f"`{module}`" in ARCHITECTURE:
        return True
    folder, _, name = module.rpartition("/")
    return any(
        line.startswith("|") and f"`{folder}/" in line and f"`{name}`" in line
        for line in ARCHITECTURE.splitlines()
    )


def test_architecture_places_every_module() -> None:
    assert [m for m in _modules() if not _placed(m)] == []


def test_every_module_architecture_names_exists() -> None:
    package = ROOT / "pipeline"
    named = set(re.findall(r"`([a-z_]+(?:/[a-z_]+)*\.py)`", ARCHITECTURE))
    missing = [n for n in sorted(named) if not ((package / n).exists() or any(package.rglob(n)))]
    assert missing == []


def test_readme_quick_start_is_what_the_scripts_and_ci_run() -> None:
    block = README.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["bash scripts/run.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    run = (ROOT / "scripts" / "run.sh").read_text(encoding="utf-8")
    assert '"$VENV/bin/pipeline" run "$@"' in run
    test = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    for step in ('ruff" check', 'ruff" format --check', 'mypy" pipeline', 'pytest" "$@"'):
        assert step in test, step


def test_one_python_version_everywhere() -> None:
    """The oldest Python the package installs on is the one mypy checks it against (so a
    newer module, like `tomllib`, is caught) and the one README asks for."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    required = re.search(r'requires-python = ">=(3\.\d+)"', pyproject)
    checked = re.search(r'python_version = "(3\.\d+)"', pyproject)
    assert required and checked
    assert required.group(1) == checked.group(1)
    assert f"Python {required.group(1)}+" in README


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"pipeline"}), ids=str)
def test_every_command_and_flag_says_what_it_does(command: str) -> None:
    parser = COMMANDS[command]
    assert parser.description, f"{command} --help has no description"
    silent = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert silent == [], f"{command}: flags without a help text"


def test_rerun_failed_help_says_fresh_is_refused() -> None:
    fresh = next(a for a in COMMANDS["pipeline rerun-failed"]._actions if a.dest == "fresh")
    assert fresh.help and "refused" in fresh.help
