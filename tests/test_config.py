"""Targets: variables, runbook.toml profiles, environments, one-line errors, no secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.config import Environment, Target, choose_target, load_profiles
from runbook.errors import ConfigError

SECRET = "hunter2-very-secret"


def test_no_variables_means_the_sandbox() -> None:
    choice = choose_target(None, environ={})
    assert (choice.kind, choice.name) == ("sandbox", "sandbox")


def test_runbook_variables_in_the_environment_make_the_env_target() -> None:
    choice = choose_target(None, environ={"API_URL": "https://api.example.com"})
    assert choice.kind == "env"
    target = Target.from_variables(choice.name, choice.variables, source=choice.source)
    assert target.api_url == "https://api.example.com"


def test_a_target_that_declares_no_environment_is_production() -> None:
    target = Target.from_variables("env", {"API_URL": "http://x.test"}, source="test")
    assert target.environment is Environment.PRODUCTION


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("API_URL", "not-a-url", "API_URL: 'not-a-url' is not an http or https URL"),
        ("WEB_URL", "ftp://web.test", "WEB_URL: 'ftp://web.test' is not an http or https URL"),
        ("DATABASE_URL", "mysql://u@h/db", "DATABASE_URL: 'mysql://u@h/db' is not a postgres"),
        ("REDIS_URL", "http://r.test", "REDIS_URL: 'http://r.test' is not a redis or rediss URL"),
        ("API_URL", "http://h.test:notaport", "API_URL: 'http://h.test:notaport' has a malformed"),
        ("PLATFORM", "heroku", "PLATFORM: 'heroku' is not one of sandbox, railway, kubernetes"),
        ("RUNBOOK_ENVIRONMENT", "prod", "RUNBOOK_ENVIRONMENT: 'prod' is not one of sandbox"),
        ("FROM_EMAIL", "nobody", "FROM_EMAIL: is not an e-mail address"),
    ],
)
def test_a_malformed_value_fails_in_one_line_naming_the_variable(
    variable: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Target.from_variables("env", {"API_URL": "http://ok.test", variable: value}, source="t")
    message = str(raised.value)
    assert message.startswith(says)
    assert "\n" not in message


def test_a_malformed_dsn_is_reported_without_its_password() -> None:
    with pytest.raises(ConfigError) as raised:
        Target.from_variables("env", {"DATABASE_URL": f"mysql://u:{SECRET}@h/db"}, source="t")
    assert SECRET not in str(raised.value)
    assert "DATABASE_URL" in str(raised.value)


def test_secrets_never_appear_in_repr_or_description() -> None:
    target = Target.from_variables(
        "env",
        {
            "API_URL": "http://api.test",
            "DATABASE_URL": f"postgresql://lv:{SECRET}@db.test:5432/lv",
            "API_SECRET": SECRET + "-api",
            "ADMIN_TOKEN": SECRET + "-token",
        },
        source="t",
    )
    assert SECRET not in repr(target)
    assert SECRET not in str(target)
    assert SECRET not in target.describe()
    assert SECRET in target.secret_values()
    assert SECRET + "-api" in target.secret_values()


def test_profiles_come_from_runbook_toml_with_interpolation(tmp_path: Path) -> None:
    path = tmp_path / "runbook.toml"
    path.write_text(
        '[targets.staging]\nenvironment = "staging"\nplatform = "railway"\n'
        'API_URL = "https://api.staging.test"\nDATABASE_URL = "${STAGING_DB}"\n'
    )
    dsn = "postgresql://u:p@db.staging.test/lv"
    choice = choose_target("staging", environ={"STAGING_DB": dsn}, config_file=path)
    target = Target.from_variables(choice.name, choice.variables, source=choice.source)
    assert target.environment is Environment.STAGING
    assert target.database_url is not None and target.database_url.get_secret_value() == dsn


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[targets.staging\n", "not valid TOML"),
        ('[targets.staging]\nAPI_URL = "https://a.test"\n', "declares no environment"),
        ('[targets.staging]\nenvironment = "staging"\nAPI_ULR = "x"\n', "unknown key 'API_ULR'"),
        ('[targets.staging]\nenvironment = "staging"\nAPI_URL = "${NOPE_UNSET}"\n',
         "refers to ${NOPE_UNSET}, which is not set"),
        ('[targets.staging]\nenvironment = "staging"\nAPI_URL = 3\n', "must be a string"),
    ],
)
def test_a_bad_runbook_toml_fails_in_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "runbook.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_profiles(path, environ={})
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_unknown_profile_lists_the_defined_ones(tmp_path: Path) -> None:
    path = tmp_path / "runbook.toml"
    path.write_text('[targets.staging]\nenvironment = "staging"\nAPI_URL = "https://a.test"\n')
    with pytest.raises(ConfigError, match=r"target 'prod' is not defined .* \(defined: staging\)"):
        choose_target("prod", environ={}, config_file=path)


def test_target_env_without_variables_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="none of the runbook's variables is set"):
        choose_target("env", environ={})
