"""The registry file: aliases only, checked when read."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError, UnknownModel
from shared.registry import configured_registry, load_registry
from shared.settings import Settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_local_folder_and_hub_id(tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    registry = load_registry(
        _write(
            tmp_path,
            """
[models.local]
task = "text-classification"
source = "local"

[models.hub]
task = "fill-mask"
source = "google-bert/bert-base-uncased"
revision = "main"
""",
        )
    )
    assert registry.get("local").location == str((tmp_path / "local").resolve())
    assert registry.get("hub").location == "google-bert/bert-base-uncased"
    assert [s.alias for s in registry.for_queues(["nlp"])] == ["local", "hub"]
    assert not registry.get("local").trust_remote_code


def test_unknown_alias(tmp_path: Path) -> None:
    registry = load_registry(_write(tmp_path, ""))
    with pytest.raises(UnknownModel, match="'nope'"):
        registry.get("nope")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[models.x]\ntask = "sing"\nsource = "a/b"\n', "unknown task"),
        (
            '[models.x]\ntask = "fill-mask"\nsource = "a/b"\ncolour = "red"\n',
            "model 'x': colour: Extra inputs are not permitted$",
        ),
        ('[models.x]\ntask = "fill-mask"\nsource = "a/b"\ndtype = "int3"\n', "dtype"),
        ("[models.x\n", "registry"),
        ("[other]\nx = 1\n", "only"),
    ],
)
def test_bad_registry_is_a_config_error(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as refused:
        load_registry(_write(tmp_path, text))
    assert "\n" not in str(refused.value) and "errors.pydantic.dev" not in str(refused.value)


def test_source_that_is_neither(tmp_path: Path) -> None:
    registry = load_registry(_write(tmp_path, '[models.x]\ntask = "fill-mask"\nsource = "gone"\n'))
    with pytest.raises(ConfigError, match="neither a folder"):
        _ = registry.get("x").location


def test_a_registry_file_named_but_absent_is_an_error_the_default_one_is_not(
    tmp_path: Path,
) -> None:
    typo = tmp_path / "modles.toml"
    with pytest.raises(ConfigError, match=f"no registry at {typo} "):
        configured_registry(Settings(home=tmp_path, models=typo))
    assert configured_registry(Settings(home=tmp_path)).specs == {}
