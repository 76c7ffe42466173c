"""Run untrusted, model-written Python in a throw-away sandbox.

Every run gets a fresh subprocess (``python -I``) in its own new, empty temporary
directory (its cwd, ``HOME`` and ``TMPDIR``), a minimal environment (``PATH``,
``HOME``, ``TMPDIR``, ``LANG`` and nothing from the parent), resource limits (CPU
seconds, address space, file size, processes, open files, no core dumps), a
wall-clock timeout after which everything it started is killed, and stdout/stderr
read incrementally with only the last ``output_cap`` bytes of each kept.

Isolation comes in layers; the first one that works on this machine is used
(``FUSEKIT_SANDBOX=bwrap|unshare|userns|none`` or ``isolation=`` forces one):

``bwrap``
    bubblewrap launched as an unprivileged uid: no network, private PID/IPC/UTS
    namespaces, a root filesystem holding only ``/usr`` (read-only), ``/proc``, a
    minimal ``/dev`` and the work directory. Nothing else of the host is visible.
``unshare`` (root only)
    ``prlimit … unshare --net --pid --fork --mount-proc --kill-child`` then
    ``setpriv`` to an unprivileged uid: no network, private PID namespace (the
    parent's ``/proc/<pid>/environ`` is out of reach), world-writable directories
    (``/tmp``, ``/var/tmp``, ``/dev/shm``…) covered with small private tmpfs.
    Still exposed: world-readable files and Unix sockets bound to filesystem paths.
``userns``
    ``unshare --user --map-root-user --net --pid …`` (works without root), the
    same tmpfs covers, capabilities dropped before the program starts. When not
    root the program keeps the invoking user's file permissions (its home
    directory is covered).
``none``
    rlimits, a dropped uid when root, process-group and uid-sweep cleanup; no
    network or PID isolation. A warning is logged once.

As root, each run leases its own uid from a reserved range (``FUSEKIT_SANDBOX_UID_BASE``,
default 2000000000, 256 uids; leases are ``flock``-ed files so several processes on
one machine never share a uid). That matters because ``RLIMIT_NPROC`` counts every
process of a uid on the machine: parallel runs sharing one uid would share one
process budget, and a leftover process of a uid would eat the next run's budget.
Sandboxed code runs under ``/usr/bin/python3`` by default (stdlib only): an
unprivileged uid cannot traverse ``/root``, where the project interpreter may live.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import fcntl
import functools
import json
import logging
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping, Sequence

log = logging.getLogger("fusekit.sandbox")

LAYERS: tuple[str, ...] = ("bwrap", "unshare", "userns", "none")
LAYER_DESCRIPTIONS: dict[str, str] = {
    "bwrap": "bubblewrap as an unprivileged uid: no network, private pid/ipc/uts namespaces, "
    "only /usr (read-only), /proc, /dev and the work dir visible",
    "unshare": "unshare (net+pid+ipc+mount namespaces) + setpriv to an unprivileged uid; "
    "world-writable dirs covered by private tmpfs; world-readable host files still visible",
    "userns": "unprivileged user namespace (net+pid+ipc+mount), capabilities dropped; "
    "world-writable dirs covered by private tmpfs; host files readable as the invoking user",
    "none": "NO ISOLATION: rlimits only (plus a dropped uid when root); network, host files "
    "and other processes are reachable",
}
STATUSES: tuple[str, ...] = ("passed", "failed", "error", "timeout", "syntax_error")
# compile() can raise more than SyntaxError on model-written source (ValueError for null bytes on older
# Pythons, RecursionError or MemoryError for nesting too deep for the parser); each means "does not compile".
COMPILE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError)

DEFAULT_OUTPUT_CAP = 64 * 1024
DEFAULT_MAX_PROCS = 64
DEFAULT_FILE_SIZE_MB = 16
_UID_COUNT = 256
_TMPFS_SIZE = "16m"
_KILL_GRACE_S = 1.0


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class SandboxResult:
    """What one sandboxed run did. ``status`` is one of :data:`STATUSES`."""

    status: str
    tests_passed: int = 0
    tests_total: int = 0
    duration_s: float = 0.0
    returncode: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    isolation: str = ""
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


# --------------------------------------------------------------------------- test splitting


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How the harness runs the tests: ordered steps, some of them counted as tests."""

    steps: tuple[tuple[str, int, str, bool], ...]  # (kind "exec"|"call", lineno, source|name, counted)
    total: int


def plan_tests(tests: str) -> _Plan:
    """Split test code into top-level statements; decide which ones count as tests.

    Counted: every top-level ``assert`` and every argument-less top-level ``def test*``
    (called after the module ran). If there is neither, top-level call expressions such
    as HumanEval's ``check(candidate)`` count; failing that, the whole test code is one
    test. Everything else (imports, helpers, assignments) runs uncounted, in order.
    Raises ``SyntaxError`` when the test code does not compile.
    """
    tree = ast.parse(tests, filename="tests.py")
    compile(tree, "tests.py", "exec")  # catches what ast.parse lets through (e.g. 'return' outside function)
    lines = tests.splitlines(keepends=True)

    def source_of(node: ast.stmt) -> str:
        start, end = node.lineno, node.end_lineno or node.lineno
        text = "".join(lines[start - 1 : end])
        return text

    def test_function(node: ast.stmt) -> bool:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or isinstance(node, ast.AsyncFunctionDef):
            return False
        a = node.args
        required = len(a.posonlyargs) + len(a.args) - len(a.defaults)
        kw_required = sum(1 for d in a.kw_defaults if d is None)
        return node.name.startswith("test") and required == 0 and kw_required == 0

    body = list(tree.body)
    has_asserts = any(isinstance(n, ast.Assert) for n in body)
    test_funcs = [n for n in body if test_function(n)]
    calls_count = not has_asserts and not test_funcs and any(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) for n in body
    )
    steps: list[tuple[str, int, str, bool]] = []
    for node in body:
        if isinstance(node, ast.Assert):
            counted = True
        elif calls_count and isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            counted = True
        else:
            counted = False
        # Decorated definitions start at their first decorator.
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        end = node.end_lineno or node.lineno
        steps.append(("exec", start, "".join(lines[start - 1 : end]), counted))
    for fn in test_funcs:
        steps.append(("call", fn.lineno, fn.name, True))
    if not any(s[3] for s in steps):
        steps = [("exec", 1, tests, True)]
    return _Plan(tuple(steps), sum(1 for s in steps if s[3]))


_HARNESS = r'''
def _fusekit_harness():
    import os, sys, traceback
    marker = {marker!r}
    steps = {steps!r}
    solution = {solution!r}
    import linecache
    test_lines = {tests_src!r}.splitlines(True)
    linecache.cache["tests.py"] = (sum(map(len, test_lines)), None, test_lines, "tests.py")
    try:
        os.unlink(__file__)  # the marker lives only in this function from here on
    except OSError:
        pass
    g = {{"__name__": "__solution__", "__file__": solution, "__builtins__": __builtins__}}
    with open(solution, encoding="utf-8") as f:
        code = compile(f.read(), solution, "exec")
    exec(code, g)
    g["__name__"] = "__main__"
    passed = total = shown = 0
    for kind, lineno, src, counted in steps:
        try:
            if kind == "call":
                g[src]()
            else:
                exec(compile("\n" * (lineno - 1) + src, "tests.py", "exec"), g)
        except BaseException:
            if shown < 10:
                shown += 1
                try:
                    sys.stderr.write("[fusekit] test statement at tests.py:%d failed:\n" % lineno)
                    traceback.print_exc(limit=5)
                except BaseException:
                    pass
        else:
            passed += counted
        total += counted
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os.write(1, ("\n%s %d %d\n" % (marker, passed, total)).encode())
    os._exit(0)


_fusekit_harness()
'''


# --------------------------------------------------------------------------- helpers


def default_python() -> str:
    """The interpreter sandboxed programs run under: the system Python when there is one."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(cand, os.X_OK):
            return cand
    return os.path.realpath(sys.executable)


@functools.lru_cache(maxsize=1)
def _work_parent() -> str:
    """Where work dirs go: the temp dir, if every ancestor is traversable by the sandbox uid."""
    base = os.path.realpath(tempfile.gettempdir())
    for cand in (base, "/tmp", "/var/tmp", "/dev/shm"):
        path, ok = cand, os.path.isdir(cand)
        while ok and path != "/":
            try:
                ok = bool(os.stat(path).st_mode & stat.S_IXOTH)
            except OSError:
                ok = False
            path = os.path.dirname(path)
        if ok:
            return cand
    return base


def _is_root() -> bool:
    return os.geteuid() == 0


def _proc_uids() -> Iterable[tuple[int, int]]:
    """(pid, uid) of every process visible in /proc."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            yield int(name), os.stat(f"/proc/{name}").st_uid
        except OSError:
            continue


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2 : data.rindex(b")") + 3] in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def kill_uid(uid: int, timeout: float = 2.0) -> int:
    """SIGKILL every live process of ``uid`` until none is left; returns how many were signalled."""
    if uid == os.getuid() or uid == 0:
        raise ValueError("refusing to sweep the caller's own uid or root")
    killed = 0
    deadline = time.monotonic() + timeout
    while True:
        live = [pid for pid, u in _proc_uids() if u == uid and not _is_zombie(pid)]
        if not live:
            return killed
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        if time.monotonic() > deadline:
            log.warning("processes of sandbox uid %d survive SIGKILL: %s", uid, live[:10])
            return killed
        time.sleep(0.005)


def _count_procs_of(uid: int) -> int:
    return sum(1 for _, u in _proc_uids() if u == uid)


class _Tail:
    """Keeps only the last ``cap`` bytes written to it."""

    def __init__(self, cap: int):
        self.cap = cap
        self.buf = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        if len(self.buf) > 2 * self.cap:
            del self.buf[: len(self.buf) - self.cap]

    def text(self) -> str:
        return bytes(self.buf[-self.cap :]).decode("utf-8", errors="replace") if self.cap else ""


def _rmtree(path: str) -> None:
    def fix(func, p, exc_info):  # a program may leave mode-000 directories behind
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=fix)


# --------------------------------------------------------------------------- uid leases


class _UidLeases:
    """Machine-wide exclusive leases on uids of a reserved range (root only)."""

    def __init__(self) -> None:
        self.base = int(os.environ.get("FUSEKIT_SANDBOX_UID_BASE", "2000000000"))
        self.count = _UID_COUNT
        self._lock = threading.Lock()
        self._dir: str | None = None

    def _lock_dir(self) -> str:
        if self._dir is None:
            d = os.path.join(tempfile.gettempdir(), f"fusekit-sandbox-uids-{os.geteuid()}")
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                pass
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise RuntimeError(f"refusing to use uid lock directory {d}: not a private directory of ours")
            self._dir = d
        return self._dir

    def acquire(self, timeout: float = 60.0) -> tuple[int, int]:
        """Returns (uid, fd of the held lock file)."""
        deadline = time.monotonic() + timeout
        start = secrets.randbelow(self.count)
        while True:
            with self._lock:
                d = self._lock_dir()
            for k in range(self.count):
                uid = self.base + (start + k) % self.count
                fd = os.open(os.path.join(d, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                return uid, fd
            if time.monotonic() > deadline:
                raise RuntimeError(f"all {self.count} sandbox uids are in use")
            time.sleep(0.01)

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing drops the flock


_LEASES = _UidLeases()


# --------------------------------------------------------------------------- layers


_COVER_SCRIPT = (
    'w=$1; shift; exec 3<"$w" || exit 125; '
    'while [ "$1" != "--" ]; do '
    f'mount -t tmpfs -o size={_TMPFS_SIZE},mode=1777,nosuid,nodev fusekit-sandbox "$1" || exit 125; shift; done; '
    'shift; mkdir -p "$w" && mount --no-canonicalize --bind /proc/self/fd/3 "$w" || exit 125; '
    'exec 3<&-; cd "$w" || exit 125; unset OLDPWD PWD; exec "$@"'
)


def _world_writable_dirs() -> list[str]:
    """Directories any uid may write to; covered with private tmpfs in the unshare/userns layers."""
    cands = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/dev/mqueue", "/var/crash"]
    for top in ("/", "/var", "/run", "/srv", "/opt", "/mnt", "/media", "/home"):
        try:
            cands.extend(os.path.join(top, n) for n in os.listdir(top))
        except OSError:
            pass
    out: list[str] = []
    for c in cands:
        if c.startswith(("/proc", "/sys")):
            continue
        try:
            real = os.path.realpath(c)
            st = os.stat(real)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o002 and real not in out:
            out.append(real)
    return out


def _bwrap_root_binds(python: str) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = "/" + name
        if os.path.islink(p):
            args += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            args += ["--ro-bind", p, p]
    real = os.path.realpath(python)
    if not real.startswith("/usr/"):
        prefix = os.path.dirname(os.path.dirname(real))
        args += ["--ro-bind", prefix, prefix]
    return args


@dataclasses.dataclass
class _Limits:
    cpu_s: int
    memory_bytes: int
    fsize_bytes: int
    nproc: int
    nofile: int


_RLIMIT_BOOT = (
    "import os,resource,sys\n"
    "a=sys.argv[1:];i=a.index('--')\n"
    "for kv in a[:i]:\n"
    " k,v=kv.split('=');v=int(v);resource.setrlimit(getattr(resource,k),(v,v))\n"
    "os.execv(a[i+1],a[i+1:])\n"
)


def _rlimit_prefix(lim: _Limits, python: str) -> list[str]:
    prlimit = shutil.which("prlimit")
    if prlimit:
        return [
            prlimit,
            f"--cpu={lim.cpu_s}",
            f"--as={lim.memory_bytes}",
            f"--fsize={lim.fsize_bytes}",
            f"--nproc={lim.nproc}",
            f"--nofile={lim.nofile}",
            "--core=0",
            "--",
        ]
    # No util-linux: a tiny exec-wrapper sets the limits (preexec_fn is unsafe in threaded parents).
    return [
        python, "-I", "-S", "-c", _RLIMIT_BOOT,
        f"RLIMIT_CPU={lim.cpu_s}", f"RLIMIT_AS={lim.memory_bytes}", f"RLIMIT_FSIZE={lim.fsize_bytes}",
        f"RLIMIT_NPROC={lim.nproc}", f"RLIMIT_NOFILE={lim.nofile}", "RLIMIT_CORE=0", "--",
    ]  # fmt: skip


def _setpriv_drop(uid: int) -> list[str]:
    setpriv = shutil.which("setpriv") or "setpriv"
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]


def _build_command(
    layer: str, *, work: str, argv: list[str], python: str, lim: _Limits, uid: int | None, env: Mapping[str, str]
) -> list[str]:
    """The full command line that runs ``argv`` (interpreter + script) in ``layer``."""
    pre = _rlimit_prefix(lim, python)
    # The outer uid drop (bwrap, userns, none): setpriv when installed, else Popen(user=...) in _drive.
    drop = _setpriv_drop(uid) if uid is not None and shutil.which("setpriv") else []
    if layer == "bwrap":
        cmd = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
        cmd += _bwrap_root_binds(python)
        cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(16 << 20), "--tmpfs", "/dev/shm"]
        cmd += ["--bind", work, work, "--chdir", work, "--clearenv"]
        for k, v in env.items():
            cmd += ["--setenv", k, v]
        return pre + drop + cmd + ["--"] + argv
    if layer in ("unshare", "userns"):
        ns = [shutil.which("unshare") or "unshare"]
        if layer == "userns":
            ns += ["--user", "--map-root-user"]
        ns += ["--net", "--pid", "--fork", "--mount-proc", "--kill-child", "--ipc", "--uts", "--"]
        covers = _world_writable_dirs()
        if layer == "userns" and not _is_root():
            home = os.path.expanduser("~")
            real_py = os.path.realpath(python)
            if (
                os.path.isdir(home)
                and home != "/"
                and not (work + "/").startswith(home.rstrip("/") + "/")
                and not real_py.startswith(home.rstrip("/") + "/")
            ):
                covers.append(home)
        script = ["/bin/sh", "-c", _COVER_SCRIPT, "fusekit-sandbox", work, *covers, "--"]
        if layer == "unshare":
            inner = _setpriv_drop(uid) if uid is not None else []
        else:
            setpriv = shutil.which("setpriv")
            inner = [setpriv, "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--"] if setpriv else []
        # userns as root: drop to the leased uid *before* creating the user namespace.
        return pre + (drop if layer == "userns" else []) + ns + script + inner + argv
    if layer == "none":
        if uid is not None:
            return pre + drop + argv
        # Not root: an intermediate shell keeps the program from signalling us via getppid().
        return pre + ["/bin/sh", "-c", '"$@"; exit $?', "fusekit-sandbox"] + argv
    raise ValueError(f"unknown sandbox layer {layer!r}; expected one of {LAYERS}")


_layer_lock = threading.Lock()
_layer_ok: dict[str, tuple[bool, str]] = {}
_auto_layer: str | None = None
_warned = False


def _probe_layer(layer: str) -> tuple[bool, str]:
    """Can ``layer`` start a program here, and is the program really unprivileged/isolated?"""
    needed = {
        "bwrap": ["bwrap"],
        "unshare": ["unshare", "setpriv", "mount"],
        "userns": ["unshare", "mount"],
        "none": [],
    }
    if layer == "unshare" and not _is_root():
        return False, "needs root"
    for tool in needed[layer]:
        if not shutil.which(tool):
            return False, f"{tool} not installed"
    if layer != "none" and not os.path.exists("/bin/sh") and layer != "bwrap":
        return False, "/bin/sh missing"
    probe = (
        "import os, socket\n"
        "s = socket.socket()\n"
        "try:\n"
        "    s.connect(('127.0.0.1', 9))\n"
        "    net = 'open'\n"
        "except OSError as e:\n"
        "    net = 'refused' if e.errno == 111 else 'unreachable'\n"
        "print('fusekit-probe', os.getuid(), os.getpid(), net)\n"
    )
    res = _run(probe, tests=None, timeout=20.0, memory_mb=512, layer=layer, python=None, stdin=None,
               output_cap=4096, max_procs=DEFAULT_MAX_PROCS, file_size_mb=1)  # fmt: skip
    m = re.search(r"fusekit-probe (\d+) (\d+) (\w+)", res.stdout_tail)
    if res.status != "passed" or not m:
        return False, f"probe failed: status={res.status} rc={res.returncode} {res.stderr_tail.strip()[-300:]}"
    uid, pid = int(m.group(1)), int(m.group(2))
    if layer in ("bwrap", "unshare", "userns") and pid > 3:
        return False, f"probe saw pid {pid}: no private pid namespace"
    if layer == "unshare" and uid == 0:
        return False, "probe still ran as root"
    return True, "ok"


def layer_available(layer: str) -> bool:
    """Whether ``layer`` works on this machine (probed once, then cached)."""
    return _layer_status(layer)[0]


def _layer_status(layer: str) -> tuple[bool, str]:
    if layer not in LAYERS:
        raise ValueError(f"unknown sandbox layer {layer!r}; expected one of {LAYERS}")
    with _layer_lock:
        if layer in _layer_ok:
            return _layer_ok[layer]
    status = _probe_layer(layer)  # outside the lock: probes run programs
    with _layer_lock:
        _layer_ok.setdefault(layer, status)
        return _layer_ok[layer]


def available_layers() -> list[str]:
    return [layer for layer in LAYERS if layer_available(layer)]


def _resolve_layer(requested: str | None) -> str:
    global _auto_layer, _warned
    req = (requested or os.environ.get("FUSEKIT_SANDBOX") or "auto").strip().lower()
    if req != "auto":
        ok, why = _layer_status(req)
        if not ok:
            raise RuntimeError(f"sandbox layer {req!r} is not available here: {why}")
        layer = req
    else:
        if _auto_layer is None:
            chosen = next((layer for layer in LAYERS if layer_available(layer)), None)
            if chosen is None:
                reasons = "; ".join(f"{x}: {_layer_status(x)[1]}" for x in LAYERS)
                raise RuntimeError(f"no code sandbox layer can run programs here ({reasons})")
            with _layer_lock:
                if _auto_layer is None:
                    _auto_layer = chosen
                    log.info("sandbox isolation: %s (%s)", chosen, LAYER_DESCRIPTIONS[chosen])
        layer = _auto_layer
    if layer == "none" and not _warned:
        _warned = True
        log.warning(
            "code sandbox layer 'none': no namespace isolation (install bubblewrap, or util-linux's "
            "unshare); model-written code runs with rlimits only%s",
            " as an unprivileged uid" if _is_root() else " as the current user",
        )
    return layer


def sandbox_isolation(detail: bool = False, isolation: str | None = None) -> str:
    """The isolation layer runs use here (``bwrap``/``unshare``/``userns``/``none``).

    With ``detail=True``: ``"<layer>: <what it isolates>"`` for run summaries.
    """
    layer = _resolve_layer(isolation)
    return f"{layer}: {LAYER_DESCRIPTIONS[layer]}" if detail else layer


# --------------------------------------------------------------------------- running


def run_python(
    code: str,
    *,
    tests: str | None = None,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    stdin: str | None = None,
    isolation: str | None = None,
    python: str | None = None,
    output_cap: int = DEFAULT_OUTPUT_CAP,
    max_procs: int = DEFAULT_MAX_PROCS,
    file_size_mb: int = DEFAULT_FILE_SIZE_MB,
) -> SandboxResult:
    """Run ``code`` (then ``tests``, if given) in a fresh sandboxed interpreter.

    Without ``tests`` the program runs as ``__main__``; status is ``passed`` when it
    exits 0, else ``error``. With ``tests`` the code runs as a module, then each
    top-level statement of the tests runs separately (see :func:`plan_tests`);
    ``tests_passed``/``tests_total`` count them and status is ``passed`` (all pass),
    ``failed`` (some fail) or ``error`` (the program died before reporting).
    ``syntax_error``: the code does not compile (checked before anything runs).
    ``timeout``: wall clock or CPU limit reached; everything the program started is killed.
    """
    layer = _resolve_layer(isolation)
    return _run(code, tests=tests, timeout=timeout, memory_mb=memory_mb, layer=layer, python=python,
                stdin=stdin, output_cap=output_cap, max_procs=max_procs, file_size_mb=file_size_mb)  # fmt: skip


def _run(
    code: str,
    *,
    tests: str | None,
    timeout: float,
    memory_mb: int,
    layer: str,
    python: str | None,
    stdin: str | None,
    output_cap: int,
    max_procs: int,
    file_size_mb: int,
) -> SandboxResult:
    t0 = time.monotonic()
    early, plan = _compile_checks(code, tests, layer, output_cap, t0)
    if early is not None:
        return early
    marker = "FUSEKIT-" + secrets.token_hex(16)
    rc, timed_out, out, err = _execute(
        code, tests, plan, marker, timeout=timeout, memory_mb=memory_mb, layer=layer, python=python or default_python(),
        stdin=stdin, output_cap=output_cap, max_procs=max_procs, file_size_mb=file_size_mb,
    )  # fmt: skip
    return _verdict(rc, timed_out, out, err, plan=plan, marker=marker, layer=layer, output_cap=output_cap,
                    duration=time.monotonic() - t0)  # fmt: skip


def _compile_checks(
    code: str, tests: str | None, layer: str, output_cap: int, t0: float
) -> tuple[SandboxResult | None, _Plan | None]:
    """(the result, when the code or the tests do not compile; the test plan otherwise)."""
    try:
        compile(code, "solution.py", "exec")
    except COMPILE_ERRORS as e:
        return SandboxResult(
            "syntax_error",
            duration_s=time.monotonic() - t0,
            isolation=layer,
            stderr_tail=f"{type(e).__name__}: {e}"[-output_cap:],
            reason="code does not compile",
        ), None
    if tests is None:
        return None, None
    try:
        return None, plan_tests(tests)
    except COMPILE_ERRORS as e:
        return SandboxResult("error", duration_s=time.monotonic() - t0, isolation=layer,
                             stderr_tail=f"{type(e).__name__}: {e}", reason="tests do not compile"), None  # fmt: skip


def _execute(
    code: str,
    tests: str | None,
    plan: _Plan | None,
    marker: str,
    *,
    timeout: float,
    memory_mb: int,
    layer: str,
    python: str,
    stdin: str | None,
    output_cap: int,
    max_procs: int,
    file_size_mb: int,
) -> tuple[int | None, bool, _Tail, _Tail]:
    """Write the program into a fresh work folder, run it under ``layer`` and clean up after it."""
    uid = fd = work = None
    try:
        if _is_root():
            uid, fd = _LEASES.acquire()
        work = tempfile.mkdtemp(prefix="fusekit-sbx-", dir=_work_parent())
        if uid is not None:
            os.chown(work, uid, uid)
        os.chmod(work, 0o700)
        if plan is None:
            script = os.path.join(work, "main.py")
            _write(script, code, uid)
        else:
            solution = os.path.join(work, "solution.py")
            _write(solution, code, uid)
            script = os.path.join(work, f"run_{secrets.token_hex(4)}.py")
            harness = _HARNESS.format(marker=marker, steps=list(plan.steps), solution=solution, tests_src=tests)
            _write(script, harness, uid)
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
        nproc = max_procs if uid is not None else _count_procs_of(os.getuid()) + max_procs
        lim = _Limits(
            cpu_s=max(1, math.ceil(timeout)) + 1,
            memory_bytes=memory_mb << 20,
            fsize_bytes=file_size_mb << 20,
            nproc=nproc,
            nofile=64,
        )
        cmd = _build_command(layer, work=work, argv=[python, "-I", script], python=python, lim=lim, uid=uid, env=env)
        stdin_f = None
        if stdin is not None:
            path = os.path.join(work, ".stdin")
            _write(path, stdin, uid)
            stdin_f = open(path, "rb")  # noqa: SIM115 - closed below
        try:
            popen_user = uid if uid is not None and layer != "unshare" and not shutil.which("setpriv") else None
            return _drive(cmd, env=env, cwd=work, stdin=stdin_f, timeout=timeout, cap=output_cap,
                          uid=uid, layer=layer, popen_user=popen_user)  # fmt: skip
        finally:
            if stdin_f is not None:
                stdin_f.close()
    finally:
        if work is not None:
            _rmtree(work)
        if fd is not None:
            _LEASES.release(fd)


def _verdict(
    rc: int | None,
    timed_out: bool,
    out: _Tail,
    err: _Tail,
    *,
    plan: _Plan | None,
    marker: str,
    layer: str,
    output_cap: int,
    duration: float,
) -> SandboxResult:
    """The result of a finished run: its status from the exit, the limits hit and the harness' summary line."""
    stdout, stderr = out.text(), err.text()
    res = SandboxResult("error", duration_s=round(duration, 4), returncode=rc, isolation=layer,
                        tests_total=plan.total if plan else 0)  # fmt: skip
    xcpu = rc is not None and rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU)
    if plan is not None:
        found = None
        for m in re.finditer(rf"^{marker} (\d+) (\d+)$", stdout, flags=re.M):
            found = m
        if found is not None:
            stdout = stdout[: found.start()].rstrip("\n") + stdout[found.end() :].rstrip("\n")
            res.tests_passed = int(found.group(1))
            if int(found.group(2)) != plan.total:
                res.tests_passed, found = 0, None
                res.reason = "test summary does not match the tests"
    res.stdout_tail, res.stderr_tail = stdout, stderr
    if timed_out or xcpu:
        res.status, res.reason = "timeout", ("wall-clock timeout" if timed_out else "CPU time limit")
        res.tests_passed = 0
    elif plan is None:
        res.status = "passed" if rc == 0 else "error"
        res.reason = "" if rc == 0 else f"exit status {rc}"
    elif found is not None:
        res.status = "passed" if res.tests_passed == plan.total else "failed"
        res.reason = f"{res.tests_passed}/{plan.total} tests passed"
    else:
        res.reason = res.reason or f"program ended before the tests finished (exit status {rc})"
    if out.total > output_cap or err.total > output_cap:
        res.reason += f" [output truncated: {out.total} stdout / {err.total} stderr bytes]"
    return res


def _write(path: str, text: str, uid: int | None) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(text)
    if uid is not None:
        os.chown(path, uid, uid)


def _exited(pid: int) -> bool:
    """Has ``pid`` exited? Leaves it a zombie, so its pid (our process group id) can't be reused yet."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _read_ready(sel: selectors.BaseSelector, wait_s: float) -> None:
    """Read what the ready pipes hold into their tails; a pipe that reads empty has closed."""
    for key, _ in sel.select(wait_s):
        try:
            data = os.read(key.fd, 65536)
        except OSError:
            data = b""
        if data:
            key.data.add(data)
        else:
            sel.unregister(key.fd)


def _read_until_exit(
    sel: selectors.BaseSelector, proc: subprocess.Popen, deadline: float, uid: int | None, layer: str
) -> bool:
    """Read both pipes until they close (or stay open after the exit); True when the deadline came first."""
    exited_at: float | None = None
    while sel.get_map():
        now = time.monotonic()
        if now >= deadline:
            return not _exited(proc.pid)
        if exited_at is None and _exited(proc.pid):
            exited_at = now
            _kill_group(proc.pid)
            if uid is not None and layer == "none":
                kill_uid(uid)
        if exited_at is not None and now - exited_at > 0.2:
            break  # something detached still holds the pipes: stop reading
        _read_ready(sel, min(0.05, deadline - now))
    return False


def _drive(
    cmd: list[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    stdin: Any,
    timeout: float,
    cap: int,
    uid: int | None,
    layer: str,
    popen_user: int | None = None,
) -> tuple[int | None, bool, _Tail, _Tail]:
    out, err = _Tail(cap), _Tail(cap)
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(
        cmd,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
        **({"user": popen_user, "group": popen_user, "extra_groups": []} if popen_user is not None else {}),
    )
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout.fileno(), selectors.EVENT_READ, out)
    sel.register(proc.stderr.fileno(), selectors.EVENT_READ, err)
    try:
        timed_out = _read_until_exit(sel, proc, deadline, uid, layer)
        # Both pipes closed (or we stopped waiting): wait for the launcher itself.
        while not timed_out and not _exited(proc.pid):
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(0.002)
        _kill_group(proc.pid)
        if timed_out and uid is not None:
            kill_uid(uid)
        elif uid is not None and layer == "none":
            kill_uid(uid)
        # Drain what is left for a short moment (killed processes close their pipes).
        drain_end = time.monotonic() + (_KILL_GRACE_S if timed_out else 0.2)
        while sel.get_map() and time.monotonic() < drain_end:
            _read_ready(sel, 0.05)
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            rc = None
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode is None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
    return rc, timed_out, out, err


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    except OSError as e:  # pragma: no cover
        if e.errno != errno.ESRCH:
            raise


# --------------------------------------------------------------------------- pool


Job = str | tuple[str, str | None] | Mapping[str, Any]


def run_many(jobs: Sequence[Job], workers: int | None = None, **defaults: Any) -> list[SandboxResult]:
    """Run many programs, at most ``workers`` at a time; results in input order.

    A job is code, a ``(code, tests)`` pair, or a mapping of :func:`run_python` keyword
    arguments including ``code``. ``defaults`` apply to every job (e.g. ``timeout=5``).
    """
    workers = max(1, workers or os.cpu_count() or 1)
    layer = _resolve_layer(defaults.pop("isolation", None))  # probe once, before the threads start

    def one(job: Job) -> SandboxResult:
        kwargs = dict(defaults)
        if isinstance(job, str):
            kwargs["code"] = job
        elif isinstance(job, tuple):
            kwargs["code"], kwargs["tests"] = job
        else:
            kwargs.update(job)
        kwargs.setdefault("isolation", layer)
        try:
            return run_python(**kwargs)
        except Exception as e:  # a launcher failure must not take the whole batch down
            log.exception("sandbox run failed")
            return SandboxResult("error", isolation=layer, reason=f"sandbox failure: {type(e).__name__}: {e}")

    if workers == 1 or len(jobs) <= 1:
        return [one(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="fusekit-sandbox") as ex:
        return list(ex.map(one, jobs))
