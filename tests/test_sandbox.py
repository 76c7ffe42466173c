"""The code sandbox: normal programs, and a battery of hostile ones against every layer here.

Every hostile program is bounded on its own (it stops after a few hundred forks, a few GB,
30 s of sleep...), so a broken sandbox cannot take the machine down. Each test checks the
run ends within its bound, reports the right status, and leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fusedata.verifiers import sandbox
from fusedata.verifiers.sandbox import plan_tests, run_many, run_python, sandbox_isolation

LAYERS_HERE = sandbox.available_layers()
ISOLATING = [layer for layer in LAYERS_HERE if layer != "none"]
IS_ROOT = os.geteuid() == 0


def _comm_procs(token: str) -> list[int]:
    """Live host pids whose /proc/<pid>/comm is ``token`` (hostile programs tag their children).

    Zombies don't count: they are dead, only not yet reaped (orphans of the ``none`` layer
    are reaped by the machine's init, which can take a while).
    """
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            comm, state = st[st.index("(") + 1 : st.rindex(")")], st[st.rindex(")") + 2]
            if comm == token and state not in "ZX":
                out.append(int(name))
    return out


def _assert_gone(token: str, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while _comm_procs(token):
        if time.monotonic() > deadline:
            left = _comm_procs(token)
            for pid in left:  # clean up before failing, never leave strays behind
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            pytest.fail(f"sandboxed processes survived the run: {left}")
        time.sleep(0.02)


def _token() -> str:
    return "fk" + secrets.token_hex(5)  # 12 chars: fits /proc/<pid>/comm (15)


TAG = 'def _tag(t):\n    try:\n        open("/proc/self/comm", "w").write(t)\n    except OSError:\n        pass\n'


@pytest.fixture(params=LAYERS_HERE)
def layer(request):
    return request.param


@pytest.fixture(params=ISOLATING)
def iso_layer(request):
    return request.param


# --------------------------------------------------------------------------- normal programs


def test_passing_tests(layer):
    r = run_python(
        "def add(a, b):\n    return a + b\n",
        tests="assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\n",
        isolation=layer,
    )
    assert (r.status, r.tests_passed, r.tests_total) == ("passed", 3, 3), r
    assert r.isolation == layer and r.duration_s < 5
    assert json.loads(r.to_json())["status"] == "passed"


def test_failing_assert(layer):
    r = run_python(
        "def add(a, b):\n    return a + b\n",
        tests="assert add(1, 2) == 3\nassert add(2, 2) == 5\nassert add(0, 1) == 1\n",
        isolation=layer,
    )
    assert (r.status, r.tests_passed, r.tests_total) == ("failed", 2, 3), r
    assert "assert add(2, 2) == 5" in r.stderr_tail and "AssertionError" in r.stderr_tail


def test_syntax_error_is_not_run():
    r = run_python("def f(:\n    pass\n", tests="assert f() is None\n")
    assert r.status == "syntax_error" and r.returncode is None and "SyntaxError" in r.stderr_tail


def test_exception_in_solution(layer):
    r = run_python("raise ValueError('boom')\n", tests="assert True\n", isolation=layer)
    assert (r.status, r.tests_passed, r.tests_total) == ("error", 0, 1), r
    assert "ValueError: boom" in r.stderr_tail


def test_exception_in_one_test_statement():
    r = run_python("def f(x):\n    return 10 // x\n", tests="assert f(1) == 10\nassert f(0) == 0\nassert f(5) == 2\n")
    assert (r.status, r.tests_passed, r.tests_total) == ("failed", 2, 3)
    assert "ZeroDivisionError" in r.stderr_tail


def test_program_without_tests_and_stdin():
    ok = run_python("import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n", stdin="1 2 3\n")
    assert ok.status == "passed" and ok.stdout_tail.strip() == "6"
    bad = run_python("import sys\nsys.exit(3)\n")
    assert bad.status == "error" and bad.returncode == 3


def test_solution_main_block_does_not_run_but_tests_main_block_does():
    code = "def f():\n    return 1\nif __name__ == '__main__':\n    input()\n"
    r = run_python(code, tests="if __name__ == '__main__':\n    assert f() == 1\n")
    assert (r.status, r.tests_passed, r.tests_total) == ("passed", 1, 1), r


def test_forged_summary_and_early_exit_are_not_trusted():
    forged = run_python(
        "print('FUSEKIT-' + '0' * 32 + ' 3 3')\ndef f():\n    return 0\n",
        tests="assert f() == 1\nassert f() == 2\nassert f() == 3\n",
    )
    assert (forged.status, forged.tests_passed, forged.tests_total) == ("failed", 0, 3)
    early = run_python("import os\nos._exit(0)\n", tests="assert False\n")
    assert early.status == "error" and early.tests_passed == 0


def test_bad_test_code_is_an_error_not_a_crash():
    r = run_python("x = 1\n", tests="assert x ==\n")
    assert r.status == "error" and "tests do not compile" in r.reason


def test_plan_tests_counting():
    assert plan_tests("import math\nassert 1\nx = 2\nassert x\n").total == 2
    humaneval = "def check(candidate):\n    assert candidate(1) == 2\n\ncheck(f)\n"
    assert plan_tests(humaneval).total == 1
    pyt = (
        "def helper(x):\n    return x\n\n"
        "def test_a():\n    assert helper(1)\n\n"
        "def test_b(tmp=1):\n    assert helper(tmp)\n"
    )
    assert plan_tests(pyt).total == 2
    assert plan_tests("print('no asserts')\n").total == 1  # a call statement counts
    assert plan_tests("x = 1\n").total == 1  # nothing countable: the whole code is one test
    r = run_python(
        "def f(x):\n    return x + 1\n",
        tests=pyt.replace("helper(", "f(").replace("def f(x):\n    return x\n\n", ""),
    )
    assert r.status == "passed" and r.tests_total == 2


def test_minimal_env_and_private_work_dir(layer):
    code = (
        "import os, json\n"
        "print(json.dumps({'env': sorted(os.environ), 'cwd': os.getcwd(), 'home': os.environ.get('HOME'),"
        " 'uid': os.getuid(), 'files': os.listdir('.')}))\n"
    )
    r = run_python(code, isolation=layer)
    assert r.status == "passed", r
    info = json.loads(r.stdout_tail.strip().splitlines()[-1])
    assert set(info["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE", "PWD"}, info
    assert info["cwd"] == info["home"] and info["files"] == ["main.py"]
    assert not os.path.exists(info["cwd"])  # removed afterwards
    if IS_ROOT and layer != "userns":
        assert info["uid"] != 0


def test_run_many_keeps_order():
    jobs = [("def f():\n    return %d\n" % i, "assert f() == %d\n" % (i if i % 2 else -1)) for i in range(6)]
    jobs.append("print('plain')")
    jobs.append({"code": "import time\ntime.sleep(5)\n", "timeout": 0.5})
    rs = run_many(jobs, workers=2, timeout=5)
    assert [r.status for r in rs] == ["failed", "passed"] * 3 + ["passed", "timeout"]


def test_isolation_reporting_and_forcing(monkeypatch, caplog):
    assert sandbox_isolation() in sandbox.LAYERS
    assert sandbox_isolation(detail=True).startswith(sandbox_isolation() + ": ")
    if IS_ROOT and "bwrap" in LAYERS_HERE:
        assert sandbox_isolation() == "bwrap"
    elif IS_ROOT and "unshare" in LAYERS_HERE:
        assert sandbox_isolation() == "unshare"
    for forced in LAYERS_HERE:
        monkeypatch.setenv("FUSEKIT_SANDBOX", forced)
        assert sandbox_isolation() == forced
        assert run_python("print(1)").isolation == forced
    monkeypatch.setattr(sandbox, "_warned", False)
    monkeypatch.setenv("FUSEKIT_SANDBOX", "none")
    with caplog.at_level(logging.WARNING, logger="fusekit.sandbox"):
        run_python("print(1)")
        run_python("print(1)")
    assert sum("no namespace isolation" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setenv("FUSEKIT_SANDBOX", "nonsense")
    with pytest.raises(ValueError):
        run_python("print(1)")


def test_missing_bwrap_falls_back(monkeypatch):
    """Without bubblewrap on PATH the auto choice is the unshare/userns fallback, and it works."""
    real_which = shutil.which
    monkeypatch.setattr(
        sandbox.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name, *a, **k)
    )
    monkeypatch.setattr(sandbox, "_layer_ok", {})
    monkeypatch.setattr(sandbox, "_auto_layer", None)
    monkeypatch.delenv("FUSEKIT_SANDBOX", raising=False)
    assert not sandbox.layer_available("bwrap")
    expected = "unshare" if IS_ROOT else "userns"
    if not sandbox.layer_available(expected):
        pytest.skip(f"{expected} not available here")
    assert sandbox_isolation() == expected
    r = run_python("def f():\n    return 1\n", tests="assert f() == 1\nassert f() == 2\n")
    assert (r.status, r.tests_passed, r.isolation) == ("failed", 1, expected)


def test_without_setpriv_and_prlimit(monkeypatch):
    """Without util-linux's setpriv/prlimit: uid drop via Popen(user=), rlimits via an exec wrapper."""
    real_which = shutil.which
    hidden = {"setpriv", "prlimit"}
    monkeypatch.setattr(
        sandbox.shutil, "which", lambda name, *a, **k: None if name in hidden else real_which(name, *a, **k)
    )
    monkeypatch.setattr(sandbox, "_layer_ok", {})
    monkeypatch.setattr(sandbox, "_auto_layer", None)
    layers = sandbox.available_layers()
    assert "none" in layers and "unshare" not in layers
    probe = (
        "import os, resource\n"
        "print(os.getuid(), resource.getrlimit(resource.RLIMIT_NPROC)[0], resource.getrlimit(resource.RLIMIT_AS)[0])\n"
    )
    for layer in layers:
        r = run_python("def f():\n    return 1\n", tests="assert f() == 1\nassert f() == 2\n", isolation=layer)
        assert (r.status, r.tests_passed, r.tests_total) == ("failed", 1, 2), (layer, r)
        info = run_python(probe, isolation=layer, memory_mb=300, max_procs=40)
        uid, nproc, as_ = map(int, info.stdout_tail.split())
        assert as_ == 300 << 20, (layer, info)
        if IS_ROOT:
            assert nproc == 40 and (uid != 0 or layer == "userns"), (layer, info)


# --------------------------------------------------------------------------- hostile programs


def test_infinite_loop(layer):
    t = time.monotonic()
    r = run_python("while True:\n    pass\n", tests="assert True\n", timeout=1.0, isolation=layer)
    assert r.status == "timeout" and r.tests_passed == 0
    assert time.monotonic() - t < 4


def test_sleep_past_timeout(layer):
    t = time.monotonic()
    r = run_python("import time\nprint('going to sleep', flush=True)\ntime.sleep(30)\n", timeout=1.0, isolation=layer)
    assert r.status == "timeout" and "going to sleep" in r.stdout_tail
    assert time.monotonic() - t < 4


def test_fork_bomb(layer):
    tok = _token()
    code = TAG + textwrap.dedent(f"""
        import os, time
        n = 0
        for _ in range(300):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                _tag("{tok}")
                time.sleep(30)
                os._exit(0)
            n += 1
        print("forked", n, flush=True)
        time.sleep(30)
    """)
    t = time.monotonic()
    r = run_python(code, timeout=1.5, isolation=layer)
    assert r.status == "timeout", r
    assert time.monotonic() - t < 5
    forked = int(r.stdout_tail.split("forked")[1].split()[0])
    if IS_ROOT:  # a dedicated uid: RLIMIT_NPROC really applies
        assert forked < sandbox.DEFAULT_MAX_PROCS
    _assert_gone(tok)


def test_parallel_runs_have_separate_process_budgets():
    if not IS_ROOT:
        pytest.skip("per-run uids are leased only as root")
    code = textwrap.dedent("""
        import os, time
        n = 0
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(3)
                os._exit(0)
            n += 1
        print("forked", n, flush=True)
    """)
    rs = run_many([code, code], workers=2, timeout=5.0, max_procs=30)
    counts = [int(r.stdout_tail.split("forked")[1].split()[0]) for r in rs]
    # Each run leases its own uid, so each gets (almost) the whole budget of 30.
    assert all(20 <= c < 30 for c in counts), counts


def test_memory_hog(layer):
    code = textwrap.dedent("""
        blocks, got = [], 0
        try:
            while got < 2560:
                blocks.append(b"x" * (64 << 20))
                got += 64
        except MemoryError:
            print("memoryerror at", got, flush=True)
            raise SystemExit(3)
        print("allocated", got)
    """)
    r = run_python(code, memory_mb=512, timeout=10, isolation=layer)
    assert r.status == "error" and "memoryerror at" in r.stdout_tail, r
    assert int(r.stdout_tail.split("memoryerror at")[1].split()[0]) <= 512


def test_huge_output(layer):
    code = (
        "import sys\nfor _ in range(40):\n"
        "    sys.stdout.write('y' * (1 << 20))\n    sys.stderr.write('z' * (1 << 18))\n"
        "print('END')\n"
    )
    t = time.monotonic()
    r = run_python(code, timeout=20, isolation=layer, output_cap=64 * 1024)
    assert r.status == "passed", r.reason
    assert len(r.stdout_tail) <= 64 * 1024 and len(r.stderr_tail) <= 64 * 1024
    assert r.stdout_tail.rstrip().endswith("END") and "truncated" in r.reason
    assert time.monotonic() - t < 15


def test_file_size_limit(layer):
    code = "with open('big', 'wb') as f:\n    for _ in range(64):\n        f.write(b'0' * (1 << 20))\n"
    r = run_python(code, file_size_mb=4, isolation=layer)
    assert r.status == "error" and "File too large" in r.stderr_tail, r


def test_write_outside_work_dir(iso_layer, tmp_path):
    name = f"fusekit_escape_{secrets.token_hex(6)}"
    targets = [f"/tmp/{name}", f"/var/tmp/{name}", f"/dev/shm/{name}", str(tmp_path / name), f"/{name}"]
    code = textwrap.dedent(f"""
        import os
        targets = {targets!r} + [os.path.join(os.path.dirname(os.getcwd()), {name!r}),
                                 os.path.join(os.path.expanduser("~"), "..", {name!r})]
        for t in targets:
            try:
                with open(t, "w") as f:
                    f.write("escaped")
                print("wrote", t)
            except OSError as e:
                print("blocked", t, type(e).__name__)
        open("inside.txt", "w").write("fine")
        print("inside ok")
    """)
    r = run_python(code, isolation=iso_layer)
    assert r.status == "passed" and "inside ok" in r.stdout_tail, r
    for t in targets:
        assert not os.path.exists(t), f"sandboxed program created {t}"
    assert not any(p.startswith(name) for p in os.listdir("/tmp"))


def test_parent_secret_env(layer, monkeypatch):
    secret = "s3cr3t-" + secrets.token_hex(12)
    monkeypatch.setenv("FUSEKIT_TEST_SECRET", secret)
    # A process that has the secret in /proc/<pid>/environ.
    holder = subprocess.Popen(["sleep", "30"], env={**os.environ})
    try:
        snoop = textwrap.dedent("""
            import os
            found = [k + "=" + v for k, v in os.environ.items() if "FUSEKIT" in k]
            for pid in ["self", str(os.getppid()), "1"] + [p for p in os.listdir("/proc") if p.isdigit()]:
                try:
                    with open("/proc/%s/environ" % pid, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                found += [e.decode(errors="replace") for e in data.split(b"\\0") if b"FUSEKIT_TEST_SECRET" in e]
            print("FOUND", found)
        """)
        control = subprocess.run(
            [sys.executable, "-c", snoop], capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"}
        )
        if IS_ROOT:  # positive control: unsandboxed, the secret is readable
            assert secret in control.stdout
        r = run_python(snoop, isolation=layer)
        assert r.status == "passed", r
        assert secret not in r.stdout_tail + r.stderr_tail
    finally:
        holder.kill()
        holder.wait()


def test_network_to_local_listener(iso_layer):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    seen: list[object] = []
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
            except OSError:
                continue
            seen.append(addr)
            conn.close()

    th = threading.Thread(target=accept_loop, daemon=True)
    th.start()
    try:
        code = textwrap.dedent(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
                print("CONNECTED")
            except OSError as e:
                print("no connection:", e)
        """)
        r = run_python(code, isolation=iso_layer, timeout=10)
        assert r.status == "passed" and "CONNECTED" not in r.stdout_tail, r
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the listener itself works
        deadline = time.monotonic() + 2
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(seen) == 1, f"listener saw {seen}"
    finally:
        stop.set()
        th.join(2)
        srv.close()


def test_kill_parent(layer):
    code = (
        "import os, time\n"
        "try:\n    os.kill(os.getppid(), 9)\n    print('signalled', os.getppid())\n"
        "except OSError as e:\n    print('refused', e)\n"
        "time.sleep(0.3)\nprint('still here')\n"
    )
    t = time.monotonic()
    r = run_python(code, timeout=5, isolation=layer)
    assert r.status in ("passed", "error"), r  # bwrap's init dies with it; elsewhere the kill is refused/ignored
    assert time.monotonic() - t < 4
    assert os.getpid() and threading.main_thread().is_alive()  # we are obviously still here


def test_daemon_does_not_outlive_run(layer):
    tok = _token()
    code = TAG + textwrap.dedent(f"""
        import os, time
        pid = os.fork()
        if pid == 0:
            os.setsid()
            if os.fork() == 0:
                _tag("{tok}")
                with open("daemon.pid", "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(30)  # keeps stdout/stderr open, too
                os._exit(0)
            os._exit(0)
        os.waitpid(pid, 0)
        for _ in range(300):
            if os.path.exists("daemon.pid"):
                break
            time.sleep(0.01)
        print("DAEMON_STARTED", open("daemon.pid").read(), flush=True)
    """)
    t = time.monotonic()
    r = run_python(code, timeout=10, isolation=layer)
    assert "DAEMON_STARTED" in r.stdout_tail, r
    assert r.status == "passed" and time.monotonic() - t < 4, r
    if layer == "none" and not IS_ROOT:
        pytest.skip("without root and namespaces a setsid daemon escapes (documented)")
    _assert_gone(tok)


def test_stray_detector_control():
    """Positive control for the checks above: unsandboxed, a setsid daemon does survive."""
    tok = _token()
    code = TAG + (
        f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    _tag('{tok}')\n"
        "    time.sleep(20)\n    os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=10, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 2
    while not _comm_procs(tok) and time.monotonic() < deadline:
        time.sleep(0.01)
    strays = _comm_procs(tok)
    for pid in strays:
        os.kill(pid, 9)
    assert strays, "the stray-process detector did not see an unsandboxed daemon"


# --------------------------------------------------------------------------- non-root path


@pytest.mark.skipif(
    not IS_ROOT or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"),
    reason="needs root, setpriv and /usr/bin/python3",
)
def test_unprivileged_caller():
    """The module driven by an unprivileged user (uid 65534) picks a namespace layer and isolates."""
    import pathlib
    import tempfile

    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="fusekit-test-nonroot-"))
    try:
        _unprivileged_caller(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _unprivileged_caller(tmp_path):
    src = tmp_path / "sandbox_copy.py"
    shutil.copy(sandbox.__file__, src)
    os.chmod(tmp_path, 0o755)
    os.chmod(src, 0o644)
    driver = textwrap.dedent(f"""
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("sbx", {str(src)!r})
        sbx = importlib.util.module_from_spec(spec); sys.modules["sbx"] = sbx; spec.loader.exec_module(sbx)
        out = {{"layers": sbx.available_layers(), "auto": sbx.sandbox_isolation()}}
        res = {{}}
        for layer in out["layers"]:
            r = sbx.run_python(
                "def f():\\n    return 2\\n",
                tests="assert f() == 2\\nassert f() == 3\\nassert f()\\n",
                isolation=layer,
            )
            n = sbx.run_python(
                "import socket\\ntry:\\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\\n"
                "except OSError as e:\\n    print(e.errno)\\n",
                isolation=layer,
            )
            t = sbx.run_python("while True: pass", timeout=0.5, isolation=layer)
            res[layer] = [r.status, r.tests_passed, r.tests_total, n.stdout_tail.strip(), t.status]
        out["res"] = res
        print(json.dumps(out))
    """)
    drv = tmp_path / "driver.py"
    drv.write_text(driver)
    os.chmod(drv, 0o644)
    p = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-I", str(drv)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd="/",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert "unshare" not in out["layers"]
    assert out["auto"] in ("bwrap", "userns")
    for layer, (status, passed, total, errno_, tstatus) in out["res"].items():
        assert (status, passed, total, tstatus) == ("failed", 2, 3, "timeout"), (layer, out)
        if layer != "none":
            assert errno_ in ("101", "111"), (layer, out)  # unreachable / refused: not the host's port 9
