"""The README as executable documentation: every shell block runs, in order, as written, in a
fresh directory against the installed `mm2latent` on the tiny preset (tests/readme_blocks.py
says how blocks are marked; tests/readme_runner.py runs them).

Each block is one test item, so a failure names its block; the blocks after a failed one are
skipped (they build on its outputs). The commands talk to this session's Prefect server
(PREFECT_API_URL) instead of each starting a temporary one: about 15 s saved per command, the
difference between a few minutes and ten (the temporary server path is tested by
tests/test_cli_signals.py and the CLI tests). That server is started here like the README's
own servers, on loopback, and stopped with them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.readme_blocks import Block, ReadmeFormatError, parse_readme
from tests.readme_runner import BlockFailed, ReadmeSession

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCKS = parse_readme(README.read_text())
SHELL_BLOCKS = [b for b in BLOCKS if b.is_shell]


def session_env(home: Path, api_url: str) -> dict[str, str]:
    """A reader's shell with the project installed (the venv's bin first on PATH), with every
    place a command keeps state moved under `home`."""
    (home / "prefect").mkdir(parents=True, exist_ok=True)  # Prefect makes only the last level
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FSSPEC_"))}
    env.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               PREFECT_HOME=str(home / "prefect"), PREFECT_API_URL=api_url,
               PREFECT_LOCAL_STORAGE_PATH=str(home / "prefect" / "storage"),
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false",
               MM2LATENT_CACHE=str(home / "weights-cache"), MPLCONFIGDIR=str(home / "mpl"),
               DASK_TEMPORARY_DIRECTORY=str(home / "dask"))
    return env


@pytest.fixture(scope="module")
def readme_session(tmp_path_factory):
    """One working directory, one Prefect server and the background servers the README starts,
    shared by all the README's blocks; every one stopped by process group at the end."""
    home = tmp_path_factory.mktemp("readme-home")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    session = ReadmeSession(tmp_path_factory.mktemp("readme-cwd"), session_env(home, api_url),
                            ready_timeout_s=900)
    failed: list[Block] = []
    try:
        # What a reader's `prefect server start` in another terminal gives every command.
        session.run(Block(index=0, line=0, lang="bash", background=True,
                          code=f"prefect server start --host 127.0.0.1 --port {port}",
                          ready=(f"{api_url}/health",)))
        yield session, failed
    finally:
        session.close()


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: f"block{b.index:02d}-line{b.line}")
def test_readme_block_runs_as_written(readme_session, block: Block):
    session, failed = readme_session
    if block.skip_reason is not None:
        pytest.skip(f"README.md line {block.line}: {block.skip_reason}")
    if failed:
        pytest.skip(f"builds on {failed[0].label}, which failed")
    try:
        seconds, cpu_s = session.run(block)
    except BlockFailed:
        failed.append(block)
        raise
    print(f"{block.label}: {seconds:.1f} s, {cpu_s:.1f} s CPU")


# --- The harness itself: it must catch a broken command, and name where it is.

BROKEN = """\
# A README

```bash
echo hello > hello.txt
```

Plain listings are documentation:

```
not a command
```

<!-- readme-test: skip (needs the official weights) -->
```bash
false
```

```bash
mm2latent --help > help.txt
mm2latent synth-data --preset tiny --no-such-flag 3 \\
    --out data/x
echo never reached > after.txt
```
"""


def test_a_renamed_flag_fails_naming_block_line_and_command(tmp_path):
    blocks = parse_readme(BROKEN)
    assert [(b.index, b.line, b.lang, b.skip_reason) for b in blocks] == [
        (1, 3, "bash", None), (2, 9, "", None), (3, 14, "bash", "needs the official weights"),
        (4, 18, "bash", None)]
    session = ReadmeSession(tmp_path, session_env(tmp_path / "home", ""))
    try:
        assert session.run(blocks[0])[0] >= 0 and (tmp_path / "hello.txt").read_text() == "hello\n"
        with pytest.raises(BlockFailed) as failure:
            session.run(blocks[3])
    finally:
        session.close()
    message = str(failure.value)
    assert message.startswith("README block 4 (README.md line 18, ```bash): exit code 2")
    assert "failed at README.md line 20: mm2latent synth-data" in message
    assert "line 20: $ mm2latent synth-data --preset tiny --no-such-flag 3 --out data/x" in message
    assert "No such option: --no-such-flag" in message  # the CLI's own words, from its output
    assert (tmp_path / "help.txt").exists() and not (tmp_path / "after.txt").exists()


def test_a_missing_output_fails_even_when_the_exit_code_is_zero(tmp_path):
    block = parse_readme("```bash\nmkdir -p elsewhere  # mm2latent x --out nowhere\n"
                         "true mm2latent dataset grid d --out grid.png\n```\n")[0]
    assert block.expected_outputs() == ["grid.png"]
    session = ReadmeSession(tmp_path, session_env(tmp_path / "home", ""))
    try:
        with pytest.raises(BlockFailed, match="expected output\\(s\\) missing: grid.png"):
            session.run(block)
    finally:
        session.close()


def test_background_servers_are_stopped_by_process_group(tmp_path):
    # The block forks a child that outlives the block's own bash, as `server &` does.
    readme = textwrap.dedent("""\
        <!-- readme-test: background (ready: http://127.0.0.1:{port}/) -->
        ```bash
        sleep 600 &
        echo $! > child.pid
        exec python -m http.server {port} --bind 127.0.0.1
        ```
        """).format(port=_free_port())
    block = parse_readme(readme)[0]
    assert block.background and block.ready[0].startswith("http://127.0.0.1:")
    session = ReadmeSession(tmp_path, session_env(tmp_path / "home", ""))
    try:
        session.run(block)
        pids = [session.started[0].proc.pid, int((tmp_path / "child.pid").read_text())]
        assert all(_alive(pid) for pid in pids)
    finally:
        session.close()
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("directive, problem", [
    ("<!-- readme-test: skip -->", "unknown readme-test directive"),
    ("<!-- readme-test: skip () -->", "needs its reason"),
    ("<!-- readme-test: skipp (typo) -->", "unknown readme-test directive"),
    ("<!-- readme-test: background (ready: tcp://10.0.0.5:8786) -->", "loopback only"),
    ("<!-- readme-test: skip (misplaced) -->\n", "directly above"),
])
def test_a_bad_directive_is_refused_naming_its_line(directive, problem):
    with pytest.raises(ReadmeFormatError, match=problem) as refused:
        parse_readme(f"text\n{directive}\n```bash\ntrue\n```\n")
    assert "README.md line 2" in str(refused.value)


def test_make_demo_runs_what_the_readme_runs():
    # `make demo` is not run here (it installs a second .venv); its mm2latent commands are the
    # README's Usage commands, which are, so a change to either that breaks the other fails.
    recipe = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    demo = [line.split("/bin/", 1)[1] for line in recipe.splitlines() if "/bin/mm2latent " in line]
    run = {" ".join(c.split("#")[0].split()) for b in SHELL_BLOCKS if b.skip_reason is None
           for _, c in b.commands()}
    assert len(demo) == 3 and [c for c in demo if " ".join(c.split()) not in run] == []


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as stopped.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\tZ" in status.read_text().split("State:")[1][:4])
