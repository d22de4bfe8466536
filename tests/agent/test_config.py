"""Configuration: every problem named before anything connects, exit code non-zero."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest

from script.harness.agent import TEST_KEY, agent_env, run_agent
from script.harness.certs import Certs
from script.harness.mosquitto import Broker
from smartserver_agent.config import ConfigError, Target, load, parse_target, store_ca, tls_context

GOOD = {
    "SMARTSERVER_BROKER_HOST": "127.0.0.1",
    "SMARTSERVER_SERVER_ID": "srv1",
    "SMARTSERVER_KEY": TEST_KEY,
    "SMARTSERVER_DATA_DIR": "/nonexistent/agent",
}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"broker_host": None}, "SMARTSERVER_BROKER_HOST is not set"),
        ({"server_id": None}, "SMARTSERVER_SERVER_ID is not set"),
        ({"key": None}, "SMARTSERVER_KEY is not set"),
        ({"key": "short"}, "SMARTSERVER_KEY is shorter than 16 characters"),
        ({"server_id": "../x"}, "SMARTSERVER_SERVER_ID='../x': use 1 to 64 letters"),
        ({"server_id": "a+"}, "SMARTSERVER_SERVER_ID='a+'"),
        ({"broker_port": "88a"}, "SMARTSERVER_BROKER_PORT='88a': must be a port number"),
        ({"broker_port": "70000"}, "SMARTSERVER_BROKER_PORT='70000'"),
        ({"base_topic": "home/#"}, "SMARTSERVER_BASE_TOPIC='home/#': must not contain wildcards"),
        ({"base_topic": "/home"}, "SMARTSERVER_BASE_TOPIC='/home': must not be empty"),
        ({"heartbeat": "0"}, "SMARTSERVER_HEARTBEAT='0': must be between 1 and 3600"),
        ({"heartbeat": "often"}, "SMARTSERVER_HEARTBEAT='often'"),
        ({"network_interval": "1"}, "SMARTSERVER_NETWORK_INTERVAL='1': must be between 5"),
        ({"max_skew": "-3"}, "SMARTSERVER_MAX_SKEW='-3'"),
        ({"target": "8.8.8.8"}, "SMARTSERVER_TARGET='8.8.8.8': expected host:port"),
        ({"target": "::1:53"}, "SMARTSERVER_TARGET='::1:53': expected host:port"),
        ({"interfaces": "eth0,../x"}, "SMARTSERVER_INTERFACES='eth0,../x'"),
        ({"tls_insecure": "maybe"}, "SMARTSERVER_TLS_INSECURE='maybe': expected 1 or 0"),
        ({"ca": "/nonexistent/ca.pem"}, "SMARTSERVER_CA: cannot read the file /nonexistent/ca.pem"),
        (
            {"ca": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"},
            "SMARTSERVER_CA: not a PEM",
        ),
        ({"username": None, "password": "pw"}, "SMARTSERVER_PASSWORD is set without SMARTSERVER_USERNAME"),
        ({"data_dir": "relative/dir"}, "SMARTSERVER_DATA_DIR='relative/dir': must be an absolute path"),
        ({"log_level": "loud"}, "SMARTSERVER_LOG_LEVEL='loud'"),
        ({"env_file": "/nonexistent/agent.env"}, "SMARTSERVER_ENV_FILE: cannot read /nonexistent/agent.env"),
        # as systemd's EnvironmentFile= passes a typo: a variable, not a line of a file
        (
            {"tls_inscure": "1"},
            "environment: unknown setting SMARTSERVER_TLS_INSCURE (did you mean SMARTSERVER_TLS_INSECURE?)",
        ),
    ],
)
def test_bad_configuration_exits_with_its_message(
    mosquitto: Broker, tmp_path: Path, settings: dict[str, str | None], message: str
) -> None:
    result = run_agent(agent_env(tmp_path, mosquitto, None, **settings))
    assert result.returncode == 2, result.stderr
    assert "the configuration has problems" in result.stderr
    assert message in result.stderr
    # validated before anything connects
    assert "New client connected" not in mosquitto.log
    # secrets are never printed
    assert mosquitto.password not in result.stderr + result.stdout
    assert TEST_KEY not in result.stderr + result.stdout


def test_every_problem_named_at_once(tmp_path: Path) -> None:
    env = agent_env(tmp_path, key="", heartbeat="x")  # and no broker at all
    result = run_agent(env)
    assert result.returncode == 2
    for name in ("SMARTSERVER_BROKER_HOST", "SMARTSERVER_KEY", "SMARTSERVER_HEARTBEAT"):
        assert name in result.stderr
    assert run_agent(env, "check").returncode == 2


def test_defaults() -> None:
    config = load(GOOD)
    assert (config.port, config.base, config.heartbeat, config.max_skew) == (8883, "home", 30.0, 30.0)
    assert config.target == Target("1.1.1.1", 53)
    assert config.client_id == "smartserver-agent-srv1"
    assert config.ca_pem is None
    assert config.ca_path is None
    assert not config.tls_insecure
    assert config.interfaces is None


def test_data_dir_from_systemd_state_directory() -> None:
    env = {k: v for k, v in GOOD.items() if k != "SMARTSERVER_DATA_DIR"}
    assert (
        str(load({**env, "STATE_DIRECTORY": "/var/lib/smartserver-agent"}).data_dir)
        == "/var/lib/smartserver-agent"
    )
    assert str(load({**env, "HOME": "/home/u"}).data_dir) == "/home/u/.local/state/smartserver-agent"


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("127.0.0.1:53", Target("127.0.0.1", 53)),
        ("[::1]:853", Target("::1", 853)),
        ("dns.lan:53", Target("dns.lan", 53)),
    ],
)
def test_targets(text: str, target: Target) -> None:
    assert parse_target(text) == target
    assert parse_target(str(target)) == target


def test_ca_pem_text_stored_0600(tmp_path: Path, broker_certs: Certs) -> None:
    data = tmp_path / "data"
    config = load({**GOOD, "SMARTSERVER_CA": broker_certs.ca_pem, "SMARTSERVER_DATA_DIR": str(data)})
    store_ca(config)
    assert config.ca_path == data / "ca.pem"
    assert config.ca_path.read_text() == broker_certs.ca_pem
    assert stat.S_IMODE(config.ca_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert tls_context(config).check_hostname


def test_ca_path_copied_0600_and_one_line_pem(tmp_path: Path, broker_certs: Certs) -> None:
    config = load({**GOOD, "SMARTSERVER_CA": str(broker_certs.ca), "SMARTSERVER_DATA_DIR": str(tmp_path)})
    store_ca(config)
    assert config.ca_path is not None
    assert config.ca_path.read_text() == broker_certs.ca_pem
    assert stat.S_IMODE(config.ca_path.stat().st_mode) == 0o600
    one_line = broker_certs.ca_pem.replace("\n", "\\n")
    assert load({**GOOD, "SMARTSERVER_CA": one_line}).ca_pem == broker_certs.ca_pem


def test_ca_that_cannot_be_stored_is_named(tmp_path: Path, broker_certs: Certs) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = load(
        {**GOOD, "SMARTSERVER_CA": str(broker_certs.ca), "SMARTSERVER_DATA_DIR": str(blocker / "d")}
    )
    with pytest.raises(ConfigError, match="cannot store the CA certificate"):
        store_ca(config)


def test_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "agent.env"
    env_file.write_text(
        "# written by the admin\n"
        "SMARTSERVER_BROKER_HOST=broker.lan\n"
        "export SMARTSERVER_SERVER_ID='srv2'\n"
        'SMARTSERVER_KEY="from-the-file-0123456789"\n'
        "\n"
        "SMARTSERVER_HEARTBEAT = 10\n"
    )
    config = load(
        {"SMARTSERVER_ENV_FILE": str(env_file), "SMARTSERVER_DATA_DIR": "/x", "SMARTSERVER_HEARTBEAT": "5"}
    )
    assert (config.host, config.server_id, config.key) == ("broker.lan", "srv2", "from-the-file-0123456789")
    assert config.heartbeat == 5  # the environment wins over the file
    assert load({"SMARTSERVER_DATA_DIR": "/x"}, env_file=env_file).heartbeat == 10


def test_env_file_problems_named_with_line(tmp_path: Path) -> None:
    env_file = tmp_path / "agent.env"
    env_file.write_text("SMARTSERVER_BROKER_HOST=b\nnonsense\nSMARTSERVER_KEYY=x\n")
    with pytest.raises(ConfigError) as err:
        load({**GOOD, "SMARTSERVER_ENV_FILE": str(env_file)})
    assert f"{env_file} line 2: expected KEY=VALUE" in err.value.problems
    assert (
        f"{env_file} line 3: unknown setting SMARTSERVER_KEYY (did you mean SMARTSERVER_KEY?)"
        in err.value.problems
    )


def test_unknown_environment_variables_are_problems() -> None:
    with pytest.raises(ConfigError) as err:
        load({**GOOD, "SMARTSERVER_FOO": "1", "SMARTSERVER_HEARTBEATS": "5", "SMARTSERVER_TLS_INSCURE": ""})
    assert err.value.problems == [
        "environment: unknown setting SMARTSERVER_FOO",
        "environment: unknown setting SMARTSERVER_HEARTBEATS (did you mean SMARTSERVER_HEARTBEAT?)",
        "environment: unknown setting SMARTSERVER_TLS_INSCURE (did you mean SMARTSERVER_TLS_INSECURE?)",
    ]
    # the node CLI's variables may share the shell; other prefixes are not ours
    load({**GOOD, "SMARTSERVER_NODE_KEY": "x", "SMARTSERVER_MQTT_USER": "u", "SMARTSERVERX": "1"})


def test_insecure_needs_its_own_setting() -> None:
    assert load({**GOOD, "SMARTSERVER_TLS_INSECURE": "1"}).tls_insecure
    assert not load({**GOOD, "SMARTSERVER_TLS_INSECURE": "0"}).tls_insecure
    assert tls_context(load(GOOD)).verify_mode == ssl.CERT_REQUIRED
    assert tls_context(load({**GOOD, "SMARTSERVER_TLS_INSECURE": "yes"})).verify_mode == ssl.CERT_NONE


def test_summary_has_no_secrets() -> None:
    config = load({**GOOD, "SMARTSERVER_USERNAME": "u", "SMARTSERVER_PASSWORD": "pw-secret-value"})
    text = "\n".join(config.summary())
    assert "pw-secret-value" not in text
    assert TEST_KEY not in text
    assert "as u" in text
