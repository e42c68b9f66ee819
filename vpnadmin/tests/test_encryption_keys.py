"""Where the encryption keys come from: the environment, a key file, or one generated once into var/."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from vpnadmin.env import persistent_encryption_keys

KEY_1 = Fernet.generate_key().decode()
KEY_2 = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def _no_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VPNADMIN_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("VPNADMIN_ENCRYPTION_KEYS_FILE", raising=False)


def test_with_nothing_set_one_key_is_generated_once_into_var_with_mode_0600(tmp_path: Path) -> None:
    keys, source = persistent_encryption_keys(tmp_path)
    path = tmp_path / "encryption_keys"
    assert source == str(path) and len(keys) == 1
    Fernet(keys[0])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert persistent_encryption_keys(tmp_path) == (keys, source)  # reused, not regenerated


def test_the_environment_names_the_key_set_newest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPNADMIN_ENCRYPTION_KEYS", f" {KEY_2}, {KEY_1} ")
    assert persistent_encryption_keys(tmp_path) == ([KEY_2, KEY_1], "VPNADMIN_ENCRYPTION_KEYS")
    assert not (tmp_path / "encryption_keys").exists()


def test_a_key_file_is_read_one_key_a_line_or_comma_separated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"{KEY_2}\n{KEY_1}\n")
    monkeypatch.setenv("VPNADMIN_ENCRYPTION_KEYS_FILE", str(key_file))
    assert persistent_encryption_keys(tmp_path) == ([KEY_2, KEY_1], "VPNADMIN_ENCRYPTION_KEYS_FILE")


def test_a_key_that_is_not_a_fernet_key_stops_start_up_naming_the_variable_and_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPNADMIN_ENCRYPTION_KEYS", f"{KEY_1},hunter2")
    with pytest.raises(ImproperlyConfigured, match=r"VPNADMIN_ENCRYPTION_KEYS: key 2 is not a Fernet key") as error:
        persistent_encryption_keys(tmp_path)
    assert "hunter2" not in str(error.value)


def test_an_unreadable_key_file_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPNADMIN_ENCRYPTION_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="VPNADMIN_ENCRYPTION_KEYS_FILE points at"):
        persistent_encryption_keys(tmp_path)


def test_the_keys_are_not_derived_from_the_secret_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "a" * 50)
    first, _ = persistent_encryption_keys(tmp_path / "one")
    second, _ = persistent_encryption_keys(tmp_path / "two")
    assert first != second


def test_processes_starting_together_agree_on_one_generated_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: persistent_encryption_keys(tmp_path)[0], range(16)))
    assert len({tuple(keys) for keys in results}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encryption_keys"]  # no draft left behind
