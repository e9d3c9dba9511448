"""The temporary Prefect server a CLI command runs its flow against (flows/prefect_runtime.py):
patient by default, and a start that fails is one PrefectServerError naming cause and fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prefect.settings import (PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL,
                              PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings)

from flows.prefect_runtime import (DEFAULT_STARTUP_TIMEOUT_S, PrefectServerError, TiedServer,
                                   launched_early, startup_timeout_s, tied_prefect_server)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_api_url():
    """As for a user without PREFECT_API_URL, also after a test harness of this session set one
    (otherwise tied_prefect_server rightly starts nothing)."""
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


def test_the_wait_is_minutes_unless_the_user_sets_prefects_own_setting():
    assert DEFAULT_STARTUP_TIMEOUT_S >= 120  # Prefect's 20 s default is what failed
    assert startup_timeout_s() == DEFAULT_STARTUP_TIMEOUT_S
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 20}):
        assert startup_timeout_s() == 20


def test_a_server_that_answers_too_late_is_one_error_naming_the_setting_and_the_fix():
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 0}):
        with pytest.raises(PrefectServerError) as caught:
            with tied_prefect_server():
                pytest.fail("the block must not run without a server")
    message = str(caught.value)
    assert "did not answer within 0 s" in message
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in message
    assert "prefect server start" in message and "PREFECT_API_URL" in message


def test_a_server_that_crashes_while_starting_is_reported_with_its_cause_and_log(tmp_path):
    unreachable = f"sqlite+aiosqlite:///{tmp_path}/not-a-dir/prefect.db"
    (tmp_path / "not-a-dir").write_text("a file where the database folder should be")
    with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: unreachable}):
        with pytest.raises(PrefectServerError) as caught:
            with tied_prefect_server():
                pytest.fail("the block must not run without a server")
    message = str(caught.value)
    assert "exited with code" in message
    assert "unable to open database file" in message  # the cause, not uvicorn's last words
    log = Path(message.split("(full log: ")[1].split(")")[0])
    assert "Traceback" in log.read_text()  # the details are kept, off the terminal
    log.unlink()


def test_the_block_runs_against_the_tied_server_and_it_stops_after():
    with tied_prefect_server():
        api_url = PREFECT_API_URL.value()
        assert httpx.get(f"{api_url}/health", timeout=10).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api_url}/health", timeout=10)


def test_cli_start_failure_is_one_line_exit_2_and_no_traceback(tmp_path, prefect_home):
    """A server that cannot start (here: its database folder is a file) ends the command with
    one line naming the cause and the log, exit 2, whether the server crashed early or late."""
    (tmp_path / "not-a-dir").write_text("a file where the database folder should be")
    env = dict(os.environ, PREFECT_API_URL="", PREFECT_HOME=str(prefect_home),
               PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path}/not-a-dir/p.db")
    done = subprocess.run([sys.executable, "-c", "from flows.main import main; main()",
                           "synth-data", "--n", "4", "--out", str(tmp_path / "ds")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: the temporary Prefect server exited with code")
    assert "unable to open database file" in errors[0]
    Path(errors[0].split("(full log: ")[1].split(")")[0]).unlink()


def test_an_early_server_starts_before_the_wait_and_is_the_one_the_block_uses(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with launched_early(True) as early:
        assert early is not None and early.process.poll() is None  # running, not waited for
        port = early.port
        with tied_prefect_server():
            assert PREFECT_API_URL.value() == f"http://127.0.0.1:{port}/api"
            assert httpx.get(f"{PREFECT_API_URL.value()}/health", timeout=10).status_code == 200
        assert early.process is None  # stopped when the block ended
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10)
        with tied_prefect_server():  # a second block: the early server is spent, a new one starts
            assert httpx.get(f"{PREFECT_API_URL.value()}/health", timeout=10).status_code == 200


def test_no_early_server_for_a_command_without_a_flow_or_with_prefect_api_url(monkeypatch):
    with launched_early(False) as early:
        assert early is None
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    with launched_early(True) as early:
        assert early is None


def test_an_early_server_is_stopped_unused_when_the_settings_name_a_server(monkeypatch):
    """PREFECT_API_URL from a Prefect profile is only known once prefect reads its settings."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with launched_early(True) as early:
        with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
            with tied_prefect_server():
                assert PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
                assert early.process is None


def test_the_console_script_runs_the_flow_on_the_server_it_launched_first(monkeypatch, tmp_path):
    """flows/main.py launches the server before importing the command; the command's flow must
    then use that server, not launch a second one (one launch, and the dataset is written)."""
    from flows.main import main

    launches = []
    launch = TiedServer.launch

    def counted(server):
        launches.append(server)
        launch(server)

    monkeypatch.setattr(TiedServer, "launch", counted)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    out = tmp_path / "ds"
    monkeypatch.setattr(sys, "argv", ["mm2latent", "synth-data", "--n", "2", "--samples-per-shard",
                                      "2", "--modalities", "mask", "--out", str(out)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    assert (out / "shard-000000.stats.json").exists()
    assert len(launches) == 1 and launches[0].closed
