"""The `shared_data` fixture skips without the data, but fails in CI (tests/conftest.py)."""
import pytest

from tests import conftest


@pytest.fixture
def missing(tmp_path, monkeypatch):
    path = tmp_path / "no_such_data"
    monkeypatch.setattr(conftest, "SHARED_DATA", path)
    return path


@pytest.mark.parametrize("value", ["true", "1", "yes", "True"])
def test_missing_data_fails_in_ci(missing, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception) as info:
        conftest.require_shared_data()
    message = str(info.value)
    assert str(missing) in message
    assert "PAGI_RSM_SHARED_DATA" in message and "../shared/data" in message


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_missing_data_skips_outside_ci(missing, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception) as info:
        conftest.require_shared_data()
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("value", [None, "true"])
def test_present_data_is_returned(tmp_path, monkeypatch, value):
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path)
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert conftest.require_shared_data() == tmp_path
