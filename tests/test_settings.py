"""A process that cannot be configured stops with one line naming the variable, never a traceback."""
import subprocess
import sys

import pytest

from app.settings import SettingsError, load
from tests.helpers import ROOT, env_for

BAD = [
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"DB_CONNECTION_STRING": "mysql://db/x", "API_KEY_PEPPER": "p" * 20}, "DB_CONNECTION_STRING"),
    ({"DB_CONNECTION_STRING": "postgresql://db/x"}, "API_KEY_PEPPER"),
    ({"API_KEY_PEPPER": "short"}, "API_KEY_PEPPER"),
    ({"AZURE_STORAGE_CONNECTION_STRING": "not a connection string"}, "AZURE_STORAGE_CONNECTION_STRING"),
    ({"AZURE_STORAGE_IMAGESET_CONTAINER": "Bad_Name"}, "AZURE_STORAGE_IMAGESET_CONTAINER"),
    ({"IMAGESET_UPLOAD_TOKEN_VALID_DAYS": "8"}, "IMAGESET_UPLOAD_TOKEN_VALID_DAYS"),
    ({"IMAGE_READ_TOKEN_VALID_MINUTES": "0"}, "IMAGE_READ_TOKEN_VALID_MINUTES"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"AZURE_ML_SUBSCRIPTION_ID": "sub"}, "AZURE_ML_RESOURCE_GROUP"),
    ({"AZURE_ML_SP_TENANT_ID": "t", "AZURE_ML_SP_APPLICATION_ID": "a"}, "AZURE_ML_SP_PASSWORD"),
    ({"BOOTSTRAP_ADMIN_EMAIL": "a@example.org"}, "BOOTSTRAP_ADMIN_KEY"),
]


@pytest.mark.parametrize("env, variable", BAD, ids=[v for _, v in BAD])
def test_bad_setting_names_the_variable(env, variable):
    with pytest.raises(SettingsError) as raised:
        load(_env_file=None, **{k.lower(): v for k, v in env.items()})
    assert raised.value.variable == variable


@pytest.mark.parametrize("command", [["-m", "app", "check-settings"], ["-c", "import main"]],
                         ids=["cli", "asgi-app"])
@pytest.mark.parametrize("env, variable", [BAD[0], BAD[3], BAD[10]], ids=["malformed", "missing", "group"])
def test_start_up_stops_with_one_line(tmp_path, command, env, variable):
    result = subprocess.run([sys.executable, *command], env=env_for({}) | env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"label-store: configuration error: {variable}: ")
    assert "Traceback" not in result.stderr + result.stdout


def test_defaults_are_the_embedded_ones():
    settings = load(_env_file=None)
    assert settings.embedded_database and settings.embedded_storage
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.image_read_token_minutes == 60
    assert settings.imageset_upload_token_valid_days == 7


def test_labelapi_read_token_days_still_honoured():
    assert load(_env_file=None, image_read_token_valid_days=2).image_read_token_minutes == 2 * 24 * 60
