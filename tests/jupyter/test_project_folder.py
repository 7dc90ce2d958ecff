"""The analyst's project folder, the Python environment and everyday notebook features,
through real kernels over jupyter_client (and the library where a kernel adds nothing).

The project folder holds what a real one does: ``activity.csv``, a helper module,
a ``.env`` and a ``.git/config`` (plus a key deeper down). As root it is owned by
another uid (4242), so "files land with the folder owner's uid" is a real check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glsandbox_kernel import FilesystemConfig, NetworkConfig, OSSandbox, create_config_by_level
from glsandbox_kernel.exceptions import BackendUnavailableError, SandboxConfigError, SandboxMemoryError

from ..conftest import as_user
from ..jupyter_fixtures import Kernel, glsandbox_kernelspec, stdout_of

__all__ = ["glsandbox_kernelspec"]  # the fixture, imported for pytest

ROOT = os.geteuid() == 0
OWNER = 4242 if ROOT else os.getuid()
SECRETS = {".env": "API_KEY=s3cret-env\n", ".git/config": "[remote]\n\turl = https://s3cret-token@example.invalid\n"}
DEEP_SECRET = ("data/keys/id_rsa", "s3cret-key\n")


def make_project(parent: Path) -> Path:
    """A project folder as an analyst has it, owned by OWNER."""
    proj = parent / "emissions"
    (proj / ".git").mkdir(parents=True)
    (proj / "data" / "keys").mkdir(parents=True)
    (proj / "activity.csv").write_text("site,kg\nA,40\nB,2\n")
    (proj / "data" / "factors.csv").write_text("fuel,kg_per_l\ndiesel,2.68\n")
    (proj / "helpers.py").write_text("def total(df):\n    return int(df.kg.sum())\n")
    for rel, text in SECRETS.items():
        (proj / rel).write_text(text)
    (proj / DEEP_SECRET[0]).write_text(DEEP_SECRET[1])
    if ROOT:
        for dirpath, dirnames, filenames in os.walk(proj):
            for name in (dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)):
                os.chown(name, OWNER, OWNER)
    return proj


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def start(name: str, cwd: str | os.PathLike[str], *options: str) -> Kernel:
    return Kernel(name, cwd=str(cwd), extra_arguments=list(options))


def cell(kernel: Kernel, code: str) -> tuple[dict[str, Any], str]:
    reply, outputs = kernel.execute(code, timeout=120)
    return reply, stdout_of(outputs)


def audit_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def written_files(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rec in audit_records(path):
        out += (rec.get("extra") or {}).get("written_files") or []
    return out


READ_SECRETS = (
    "import os\n"
    "for p in ('.env', '.git/config', 'data/keys/id_rsa'):\n"
    "    try:\n"
    "        print(p, 'READ', open(p).read())\n"
    "    except OSError as e:\n"
    "        print(p, 'refused', type(e).__name__)\n"
)


# -- the project folder through real kernels ---------------------------------------------------------


@pytest.mark.usefixtures("glsandbox_kernelspec")
def test_moderate_kernel_reads_the_project_and_writes_only_the_output_folder(project: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    k = start("glsandbox", project, f"--SandboxKernel.audit_log={log}")
    try:
        reply, out = cell(
            k, "import os, pandas as pd\ndf = pd.read_csv('activity.csv')\nprint(os.getcwd(), df.kg.sum())"
        )
        assert reply["status"] == "ok", reply
        assert out == f"{project} 42\n"
        reply, out = cell(k, "%run helpers.py\nimport helpers\nprint(total(df), helpers.total(df))")
        assert (reply["status"], out) == ("ok", "42 42\n")
        reply, out = cell(k, "print(pd.read_csv('data/factors.csv').kg_per_l[0])")
        assert out == "2.68\n"
        reply, out = cell(k, READ_SECRETS)
        assert "READ" not in out and "s3cret" not in out and out.count("refused") == 3, out
        reply, _ = cell(k, "df.to_csv('results.csv')")  # a read-only project: fails loudly
        assert reply["status"] == "error" and reply["ename"] == "OSError" and "Read-only" in reply["evalue"]
        assert not (project / "results.csv").exists()
        reply, _ = cell(k, "df.assign(t=df.kg * 2).to_csv('sandbox-output/summary.csv', index=False)")
        assert reply["status"] == "ok", reply
    finally:
        k.shutdown()
    result = project / "sandbox-output" / "summary.csv"
    assert result.read_text() == "site,kg,t\nA,40,80\nB,2,4\n"
    assert result.stat().st_uid == OWNER
    digest = hashlib.sha256(result.read_bytes()).hexdigest()
    entries = [e for e in written_files(log) if e.get("path") == str(result)]
    assert entries and entries[-1]["sha256"] == digest and entries[-1]["size"] == result.stat().st_size


@pytest.mark.usefixtures("glsandbox_kernelspec")
def test_strict_kernel_hides_the_project_unless_named(project: Path) -> None:
    k = start("glsandbox-strict", project)
    try:
        reply, out = cell(k, "import os\nprint(os.getcwd(), os.listdir('.'))")
        assert out == f"{project} []\n"
        for path in ("activity.csv", str(project / "activity.csv"), str(project / ".env")):
            reply, _ = cell(k, f"open({path!r}).read()")
            assert reply["status"] == "error" and reply["ename"] == "FileNotFoundError", (path, reply)
        reply, _ = cell(k, "open('results.csv', 'w')")  # never lost in a scratch folder
        assert reply["status"] == "error" and "Read-only" in reply["evalue"]
        reply, _ = cell(k, "!ls")
        assert reply["status"] == "error" and reply["ename"] == "SandboxViolationError", reply
    finally:
        k.shutdown()
    k = start("glsandbox-strict", project, f"--SandboxKernel.readonly_paths={project}")
    try:
        reply, out = cell(k, "print(open('activity.csv').read().splitlines()[1])")
        assert out == "A,40\n"
        reply, out = cell(k, READ_SECRETS)
        assert "READ" not in out and out.count("refused") == 3, out
    finally:
        k.shutdown()


@pytest.fixture
def lenient_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``glsandbox-lenient`` kernelspec written by ``glsandbox install --level lenient``."""
    from glsandbox_kernel.cli import main

    prefix = tmp_path / "lenient-prefix"
    assert main(["install", "--prefix", str(prefix), "--level", "lenient"]) == 0
    data = str(prefix / "share" / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", data + os.pathsep + os.environ.get("JUPYTER_PATH", ""))
    return "glsandbox-lenient"


def test_lenient_kernel_writes_the_project_as_its_owner(project: Path, tmp_path: Path, lenient_spec: str) -> None:
    log = tmp_path / "audit.jsonl"
    k = start(lenient_spec, project, f"--SandboxKernel.audit_log={log}")
    try:
        reply, _ = cell(k, "import pandas as pd\npd.read_csv('activity.csv').to_csv('results.csv', index=False)")
        assert reply["status"] == "ok", reply
        reply, out = cell(k, READ_SECRETS)
        assert "READ" not in out and out.count("refused") == 3, out
        reply, _ = cell(k, "open('.env', 'w').write('overwritten')")
        assert reply["status"] == "error"
    finally:
        k.shutdown()
    result = project / "results.csv"
    assert result.read_text() == "site,kg\nA,40\nB,2\n" and result.stat().st_uid == OWNER
    assert (project / ".env").read_text() == SECRETS[".env"]
    assert not (project / "__pycache__").exists()
    digest = hashlib.sha256(result.read_bytes()).hexdigest()
    assert any(e.get("path") == str(result) and e["sha256"] == digest for e in written_files(log))


# -- secrets at every level and backend (library: the same plans, fewer kernels) ------------------------


def _read_all(paths: list[str]) -> dict[str, str]:  # WORKER side
    out = {}
    for p in paths:
        try:
            with open(p) as fh:
                out[p] = "READ " + fh.read()
        except OSError as exc:
            out[p] = type(exc).__name__
    return out


@pytest.mark.parametrize("isolation", ["namespace", "basic"])
@pytest.mark.parametrize("level", ["strict", "moderate", "lenient"])
def test_secrets_stay_hidden_at_every_level(project: Path, level: str, isolation: str) -> None:
    fs = FilesystemConfig(project_dir=str(project), readonly_paths=(str(project),) if level == "strict" else ())
    # (BASIC cannot route LENIENT's network through the proxy: the network is off here.)
    net = NetworkConfig(allow_network=isolation != "basic" and level == "lenient")
    cfg = create_config_by_level(level, isolation_type=isolation, filesystem=fs, network=net)
    paths = [str(project / p) for p in (*SECRETS, DEEP_SECRET[0])]
    if isolation == "basic" and level == "lenient":
        with pytest.raises(BackendUnavailableError, match="secrets"), OSSandbox(cfg) as box:
            box.execute(_read_all, paths)
        return
    with OSSandbox(cfg) as box:
        got = box.execute(_read_all, [*paths, str(project / "activity.csv")])
    assert got.pop(str(project / "activity.csv")).startswith("READ site,kg")
    assert all(not v.startswith("READ") for v in got.values()), got


def test_unsafe_project_folders_are_refused() -> None:
    for bad in ("/", "/etc", "/usr/lib", "/tmp", os.path.expanduser("~"), "/home"):
        with pytest.raises(SandboxConfigError, match="project_dir"):
            FilesystemConfig(project_dir=bad)


# -- no working directory breaks or widens the sandbox ---------------------------------------------------


@pytest.fixture
def home_project() -> Iterator[Path]:
    home = Path(os.path.expanduser("~"))
    parent = Path(tempfile.mkdtemp(prefix="glsb-test-", dir=home))
    try:
        yield make_project(parent)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.usefixtures("glsandbox_kernelspec")
@pytest.mark.parametrize("cwd", ["/tmp", "/", "/etc", "home"])
def test_kernel_from_any_working_directory(cwd: str, home_project: Path) -> None:
    marker = tempfile.NamedTemporaryFile(prefix="glsb-marker-", dir="/tmp")
    where = str(home_project) if cwd == "home" else cwd
    k = start("glsandbox", where)
    try:
        code = (
            "import os, sys\n"
            f"print(os.getcwd() == {where!r}, os.path.exists({marker.name!r}), os.path.exists('/etc/shadow'),"
            f" os.path.exists({os.path.expanduser('~/.bashrc')!r}), {str(home_project)!r} in sys.path)"
        )
        reply, out = cell(k, code)
        assert reply["status"] == "ok", reply
        shown = cwd == "home"
        assert out == f"{shown} False False False {shown}\n"
        if shown:
            reply, out = cell(k, "print(open('activity.csv').read().count(','))\n" + READ_SECRETS)
            assert out.startswith("3\n") and "READ" not in out
    finally:
        k.shutdown()
        marker.close()


def test_script_in_a_source_checkout_of_this_package(tmp_path: Path) -> None:
    """A script run from a folder holding another copy of the package (a checkout)."""
    import glsandbox_kernel

    checkout = tmp_path / "checkout"
    shutil.copytree(os.path.dirname(glsandbox_kernel.__file__), checkout / "glsandbox_kernel")
    (checkout / ".env").write_text("TOKEN=s3cret\n")
    code = f"import os, glsandbox_kernel.worker.shell\nprint(os.path.exists({str(checkout / '.env')!r}))"
    (checkout / "run.py").write_text(
        "from glsandbox_kernel import OSSandbox, create_config_by_level\n"
        "with OSSandbox(create_config_by_level('moderate')) as box:\n"
        f"    r = box.run_cell({code!r})\n"
        "    print(r.status, ''.join(o.get('text', '') for o in r.outputs).strip())\n"
    )
    proc = subprocess.run(
        [sys.executable, "run.py"], cwd=checkout, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok False"


# -- memory means resident memory ----------------------------------------------------------------------


def _frame_after_scipy() -> int:  # WORKER side
    import numpy as np
    import pandas as pd
    import scipy  # noqa: F401

    return int(pd.DataFrame(np.random.rand(1_000_000, 20)).memory_usage().sum())


def _overrun() -> int:  # WORKER side
    import time

    block = b"1" * (900 * 1024 * 1024)
    time.sleep(2)
    return len(block)


@pytest.mark.parametrize("isolation", ["namespace", "basic"])
def test_memory_limit_is_resident_memory(isolation: str) -> None:
    cfg = create_config_by_level("moderate", isolation_type=isolation)
    limit = cfg.limits.memory_limit_bytes
    with OSSandbox(cfg) as box:
        assert box.execute(_frame_after_scipy) >= 160_000_000
        with pytest.raises(SandboxMemoryError) as info:
            box.execute(_overrun)
        assert info.value.limit == limit and info.value.peak is not None and info.value.peak > 0
        assert box.execute(_frame_after_scipy) >= 160_000_000  # a fresh worker, imports fine


# -- everyday notebook features --------------------------------------------------------------------------


@pytest.fixture
def moderate_kernel(project: Path, glsandbox_kernelspec: str) -> Iterator[Kernel]:
    k = start("glsandbox", project)
    try:
        yield k
    finally:
        k.shutdown()


def test_shell_commands_pip_timeit_tqdm_exit(moderate_kernel: Kernel) -> None:
    k = moderate_kernel
    reply, out = cell(k, "!ls")
    assert reply["status"] == "ok" and "activity.csv" in out and "helpers.py" in out
    reply, out = cell(k, "%pip --version")
    assert reply["status"] == "ok" and out.startswith("pip ")
    reply, out = cell(k, "%timeit -n 3 -r 2 sum(range(100))")
    assert reply["status"] == "ok" and "per loop" in out
    reply, outputs = k.execute("from tqdm.auto import tqdm\nfor _ in tqdm(range(5)): pass\nprint('done')")
    assert reply["status"] == "ok" and "done" in stdout_of(outputs)
    reply, _ = k.execute("exit")  # as ipykernel: the kernel's ask_exit payload (a console leaves); the worker goes on
    assert reply["status"] == "ok" and reply["payload"] == [{"source": "ask_exit", "keepkernel": False}], reply
    reply, out = cell(k, "print('still here')")
    assert out == "still here\n"


def _comm_states(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m["content"]["data"].get("state", {})
        for m in outputs
        if m["msg_type"] in ("comm_open", "comm_msg") and isinstance(m["content"].get("data"), dict)
    ]


def _texts(states: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for s in states for o in s.get("outputs", []) or [])


def test_widget_output_captures_and_interact_recomputes(moderate_kernel: Kernel) -> None:
    k = moderate_kernel
    reply, outputs = k.execute(
        "import ipywidgets as w\nout = w.Output()\ndisplay(out)\nprint('in the cell')\n"
        "with out:\n    print('in the widget')\n"
    )
    assert reply["status"] == "ok", reply
    assert stdout_of(outputs) == "in the cell\n"
    assert "in the widget" in _texts(_comm_states(outputs))
    reply, outputs = k.execute(
        "from ipywidgets import interact\n"
        "box = interact(lambda n: print('total', n * 10), n=w.IntSlider(value=2, min=0, max=9))\n"
        "slider = box.widget.children[0]\n"
    )
    assert reply["status"] == "ok", reply
    assert "total 20" in _texts(_comm_states(outputs)) and "total" not in stdout_of(outputs)
    reply, outputs = k.execute("print(slider.model_id)")
    model_id = stdout_of(outputs).strip()
    msg = k.kc.session.msg(
        "comm_msg", {"comm_id": model_id, "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []}}
    )
    k.kc.shell_channel.send(msg)
    outputs = k.collect(msg["header"]["msg_id"])
    texts = _texts(_comm_states(outputs))
    assert "total 70" in texts and "total 20" not in texts.split("total 70")[-1]


# -- kernel options and install flags ---------------------------------------------------------------------


def test_install_writes_kernel_options(tmp_path: Path, project: Path) -> None:
    from glsandbox_kernel.cli import main

    prefix = tmp_path / "prefix"
    rc = main(
        [
            "install",
            "--prefix",
            str(prefix),
            "--name",
            "emissions",
            "--level",
            "strict",
            "--isolation",
            "namespace",
            "--project",
            str(project),
            "--ro",
            str(project / "data"),
            "--allow-host",
            "api.example.invalid:443",
            "--memory",
            "1G",
        ]
    )
    assert rc == 0
    spec = json.loads((prefix / "share" / "jupyter" / "kernels" / "emissions" / "kernel.json").read_text())
    argv = spec["argv"]
    for arg in (
        "--SandboxKernel.level=strict",
        "--SandboxKernel.isolation=namespace",
        f"--SandboxKernel.project={project}",
        f"--SandboxKernel.readonly_paths={project / 'data'}",
        "--SandboxKernel.allowed_hosts=api.example.invalid:443",
        "--SandboxKernel.memory=1G",
    ):
        assert arg in argv
    assert main(["install", "--prefix", str(prefix), "--project", "/etc"]) == 2


@pytest.mark.usefixtures("glsandbox_kernelspec")
def test_blocked_connection_names_the_policy_and_host(project: Path) -> None:
    k = start("glsandbox", project, "--SandboxKernel.allowed_hosts=api.example.invalid:443")
    try:
        reply, _ = cell(k, "import socket\nsocket.create_connection(('203.0.113.7', 443), timeout=5)")
        assert reply["status"] == "error"
        assert "sandbox policy" in reply["evalue"] and "203.0.113.7:443" in reply["evalue"]
        assert "allowed hosts api.example.invalid:443" in reply["evalue"]
        reply, out = cell(
            k,
            "import urllib.request, urllib.error\n"
            "try:\n    urllib.request.urlopen('http://other.example.invalid/', timeout=10)\n"
            "except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n",
        )
        # The proxy's refusal is a trusted violation: in enforcing mode it stops the cell and names the host.
        assert reply["status"] == "error", (reply, out)
        assert "other.example.invalid:80" in reply["evalue"] and "not in allowed_hosts" in reply["evalue"], reply
    finally:
        k.shutdown()


def test_rootless_writes_land_as_the_user(tmp_path: Path) -> None:
    """Rootless: the sandbox uid maps to the user, so the user's folder is written as the user.

    As root the script runs as OWNER through the harness that makes this interpreter
    reachable for another uid (tests/conftest.py), in a folder that uid can reach
    (pytest's own temporary folders are root's alone).
    """
    work = Path(tempfile.mkdtemp(prefix="glsandbox-rootless-")) if ROOT else tmp_path
    try:
        work.chmod(0o755)
        proj = make_project(work)
        script = work / "rootless.py"
        script.write_text(
            "from glsandbox_kernel import FilesystemConfig, NetworkConfig, OSSandbox, create_config_by_level\n"
            f"fs = FilesystemConfig(project_dir={str(proj)!r})\n"
            "with OSSandbox(create_config_by_level('lenient', isolation_type='namespace', filesystem=fs)) as box:\n"
            "    r = box.run_cell(\"open('results.csv', 'w').write('ok')\")\n"
            "    print(r.status)\n"
        )
        argv = [sys.executable, str(script)]
        env = None
        if ROOT:
            argv = as_user(argv, uid=OWNER)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work)}
        proc = subprocess.run(argv, env=env, cwd=str(work), capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
        assert (proj / "results.csv").stat().st_uid == OWNER
    finally:
        if ROOT:
            shutil.rmtree(work, ignore_errors=True)


def test_exec_takes_the_scripts_folder_and_run_passes_project_options(project: Path, tmp_path: Path) -> None:
    script = project / "analyse.py"
    script.write_text(
        "import os, helpers, pandas as pd\n"
        "df = pd.read_csv('activity.csv')\n"
        "df.to_csv('sandbox-output/from-exec.csv', index=False)\n"
        "print(os.getcwd(), helpers.total(df))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "glsandbox_kernel.cli", "exec", str(script)],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{project} 42"
    assert (project / "sandbox-output" / "from-exec.csv").stat().st_uid == OWNER
    import argparse

    from glsandbox_kernel.cli_options import add_project_options
    from glsandbox_kernel.notebook.run import kernel_argv

    p = argparse.ArgumentParser()
    p.add_argument("--level", default="moderate")
    add_project_options(p)
    args = p.parse_args(["--project", str(project), "--ro", str(tmp_path), "--allow-host", "api.example.invalid:443"])
    argv = kernel_argv(args)
    assert f"--SandboxKernel.project={project}" in argv
    assert f"--SandboxKernel.readonly_paths={tmp_path}" in argv
    assert "--SandboxKernel.allowed_hosts=api.example.invalid:443" in argv


@pytest.mark.parametrize("isolation", ["namespace", "basic"])
def test_shell_commands_on_each_backend(isolation: str) -> None:
    """``!cmd`` and ``%pip`` where programs may run (a private devpts, or pipes where there is no
    pty), a SandboxViolationError where they may not."""
    with OSSandbox(create_config_by_level("moderate", isolation_type=isolation)) as box:
        r = box.run_cell("x = 3\n!echo hi {x}")
        assert r.status == "ok" and "".join(o.get("text", "") for o in r.outputs).strip() == "hi 3"
        r = box.run_cell("%pip --version")
        assert r.status == "ok" and "".join(o.get("text", "") for o in r.outputs).startswith("pip ")
    with OSSandbox(create_config_by_level("strict", isolation_type=isolation)) as box:
        r = box.run_cell("!echo hi")
        assert r.status == "error" and r.error_name == "SandboxViolationError", r.error_value


def test_magic_takes_the_current_folder_and_project_ro_options(project: Path, tmp_path: Path) -> None:
    """``%%sandbox`` in the stock python3 kernel started in the project folder."""
    other = make_project(tmp_path / "other")
    (other / "activity.csv").write_text("site,kg\nZ,1\n")
    k = start("python3", project)
    try:
        assert cell(k, "%load_ext glsandbox_kernel")[0]["status"] == "ok"
        reply, out = cell(k, "%%sandbox\nimport os\nprint(os.getcwd(), open('activity.csv').read().split()[1])")
        assert reply["status"] == "ok" and f"{project} A,40" in out, (reply, out)
        reply, out = cell(k, "%%sandbox --name s\n" + READ_SECRETS)
        assert "READ" not in out and out.count("refused") == 3, out
        reply, _ = cell(k, "%%sandbox strict --name st\nopen('activity.csv')")
        assert reply["status"] == "error"
        reply, out = cell(
            k, f"%%sandbox strict --name ro --ro {project}\nprint(open('activity.csv').read().split()[1])"
        )
        assert "A,40" in out, (reply, out)
        reply, out = cell(k, f"%%sandbox --name p --project {other}\nprint(open('activity.csv').read().split()[1])")
        assert "Z,1" in out, (reply, out)
    finally:
        k.shutdown()


def test_container_shows_the_project_only_where_nothing_must_be_hidden(project: Path, tmp_path: Path) -> None:
    """The container's binds cannot mask single names: a project holding secrets is not shown at
    all (nor at STRICT); a clean one is, read-only at MODERATE."""
    from glsandbox_kernel.backends.registry import backends

    ok, why = backends()["container"].available()
    if not ok:
        pytest.skip(f"container: {why}")
    paths = ["/work/project/activity.csv", "/work/project/.env", str(project / "activity.csv")]
    for level in ("strict", "moderate"):
        fs = FilesystemConfig(project_dir=str(project))
        with OSSandbox(create_config_by_level(level, isolation_type="container", filesystem=fs)) as box:
            got = box.execute(_read_all, paths)
        assert all(not v.startswith("READ") for v in got.values()), (level, got)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "activity.csv").write_text("site,kg\nA,40\n")
    clean.chmod(0o755)
    (clean / "activity.csv").chmod(0o644)
    fs = FilesystemConfig(project_dir=str(clean))
    with OSSandbox(create_config_by_level("moderate", isolation_type="container", filesystem=fs)) as box:
        got = box.execute(_read_all, ["/work/project/activity.csv"])
    assert got["/work/project/activity.csv"].startswith("READ site,kg"), got
