"""Maths answer verification: extract the final answer, compare it with the gold one.

Extraction takes the last ``\\boxed{…}``/``\\fbox{…}`` (brace-matched), else the text after
"answer is"/"final answer:"/"####", else the last number. A response boxing two or more
*different* answers is wrong ("multiple_boxed").

Comparison runs in two stages:

1. a cheap fast path in the calling process: normalised literal equality, then numeric
   equality when both sides are plain numbers/fractions/percentages (both numbers and
   unequal is decided "wrong" right there);
2. everything else goes to math-verify (``verify(gold, pred)``, gold first) in a pool of
   spawned worker processes. math-verify's own signal-based timeouts are disabled
   (``parsing_timeout=None``, ``timeout_seconds=None``: they break off the main thread);
   instead each item has an outer wall-clock limit and a worker that overruns it is
   killed and replaced, its item labelled "timeout".

The pool stays up between calls (worker start-up imports sympy, ~1 s); it is closed at
exit or by :func:`close_math_pool`.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import math as _m
import os
import re
import threading
import time
from collections import deque
from multiprocessing.connection import wait as _mp_wait
from typing import Any

log = logging.getLogger("fusekit.verifiers.math")

LABELS: tuple[str, ...] = ("correct", "wrong", "no_answer", "timeout", "error")
_WORKER_START_TIMEOUT_S = 120.0
_WORKER_MEMORY_BYTES = 4 << 30


@dataclasses.dataclass
class MathResult:
    extracted: str | None
    correct: bool
    label: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- extraction


def boxed_answers(text: str) -> list[str]:
    """Contents of every ``\\boxed{…}`` / ``\\fbox{…}`` (also ``\\boxed 5``), in order."""
    out: list[str] = []
    for m in re.finditer(r"\\(?:boxed|fbox)(?![A-Za-z])", text):
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j, start = 0, i, i + 1
            while j < len(text):
                c = text[j]
                if c == "\\":
                    j += 2  # \{ and \} are literal braces
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        out.append(text[start:j].strip())
                        break
                j += 1
        elif i > m.end():  # "\boxed 5": up to the next space or math delimiter
            tok = re.match(r"[^\s$]+", text[i:])
            if tok:
                out.append(tok.group(0).rstrip(".,"))
    return [a for a in out if a]


_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is\s*:?|:|=)\s*(.+)|^\s*####\s*(.+)",
    flags=re.IGNORECASE | re.MULTILINE,
)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?%?|-?\.\d+")


def _clean_phrase(s: str) -> str:
    s = s.strip()
    s = re.split(r"\.\s|;\s|\s+(?:because|since|which|so that)\s", s, maxsplit=1)[0]
    s = s.strip().strip("*").strip()
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b):
            s = s[len(a) : len(s) - len(b)]
            break
    s = s.strip().rstrip(".").strip().strip("$").strip()
    return s


def extract_answer(text: str | None) -> str | None:
    """The response's final answer as a string, or None when it has none."""
    if not text:
        return None
    boxes = boxed_answers(text)
    if boxes:
        return boxes[-1]
    phrases = [m.group(1) or m.group(2) for m in _ANSWER_PHRASE.finditer(text)]
    for p in reversed(phrases):
        c = _clean_phrase(p)
        if c:
            return c
    nums = _NUMBER.findall(text)
    return nums[-1] if nums else None


# --------------------------------------------------------------------------- fast path


def _strip_command(s: str, cmd: str) -> str:
    """Replace ``\\cmd{X}`` by ``X`` (innermost first, non-nested contents)."""
    pat = re.compile(r"\\" + cmd + r"\s*\{([^{}]*)\}")
    prev = None
    while prev != s:
        prev, s = s, pat.sub(r"\1", s)
    return s


def latex_fixups(s: str) -> str:
    """Meaning-preserving rewrites math-verify's parser trips on (``\\sqrt3``, ``\\frac12``, ``\\dfrac``)."""
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}", s)
    s = re.sub(r"\\frac\s*([0-9])\s*([0-9])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*([0-9A-Za-z])", r"\\frac\1{\2}", s)
    return s


def normalize(s: str) -> str:
    """Literal normal form used by the fast path (not a full LaTeX normaliser)."""
    s = s.strip()
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b):
            s = s[len(a) : len(s) - len(b)]
    s = latex_fixups(s)
    for tok in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "~", "\\displaystyle"):
        s = s.replace(tok, "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "").replace("\\%", "%")
    for cmd in ("text", "textbf", "textrm", "mathrm", "mathbf", "mbox"):
        s = _strip_command(s, cmd)
    s = "".join(s.split()).rstrip(".")
    m = re.fullmatch(r"\(?([A-Za-z])\)?", s)
    if m:
        return m.group(1).upper()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?%?", s):
        s = s.replace(",", "")
    return s


def _number(s: str) -> tuple[float, bool, str | None] | None:
    """(value, is_percent, exact integer string or None) of a plain number, else None."""
    if len(s) > 64:
        return None
    pct = s.endswith("%")
    if pct:
        s = s[:-1]
    try:
        if re.fullmatch(r"[-+]?\d+", s):
            return float(int(s)), pct, str(int(s))
        if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+)", s):
            return float(s), pct, None
        m = re.fullmatch(r"([-+]?\d+)/(\d+)", s) or re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}", s)
        if m and len(m.groups()) == 2:
            den = int(m.group(2))
            return (int(m.group(1)) / den, pct, None) if den else None
        if m:
            den = int(m.group(3))
            if not den:
                return None
            v = int(m.group(2)) / den
            return (-v if m.group(1) else v), pct, None
    except (ValueError, OverflowError):
        return None
    return None


def _close(a: float, b: float) -> bool:
    if _m.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9):
        return True
    return abs(a) < 1e9 and abs(b) < 1e9 and round(a, 6) == round(b, 6)


def fast_compare(pred: str, gold: str) -> bool | None:
    """True/False when decidable without sympy (equal normal forms, or both plain numbers), else None."""
    np_, ng = normalize(pred), normalize(gold)
    if np_ == ng and np_:
        return True
    vp, vg = _number(np_), _number(ng)
    if vp is None or vg is None:
        return None
    if not vp[1] and not vg[1] and vp[2] is not None and vg[2] is not None:
        return vp[2] == vg[2]
    cands_p = (vp[0] / 100, vp[0]) if vp[1] else (vp[0],)
    cands_g = (vg[0] / 100, vg[0]) if vg[1] else (vg[0],)
    return any(_close(p, g) for p in cands_p for g in cands_g)


def wrap_math(s: str) -> str:
    """Give math-verify LaTeX delimiters: plain strings are wrapped in ``$…$``."""
    s = latex_fixups(s.strip())
    if "$" in s or "\\(" in s or "\\[" in s or "\\boxed" in s:
        return s
    return f"${s}$"


def _precheck(text: str | None, gold: str | None) -> tuple[MathResult | None, str | None]:
    """Everything decidable in the calling process; returns (result or None, extracted)."""
    extracted = extract_answer(text)
    if gold is None or not str(gold).strip():
        return MathResult(extracted, False, "error", "no gold answer"), extracted
    if extracted is None:
        return MathResult(None, False, "no_answer", "no final answer found"), None
    boxes = boxed_answers(text or "")
    if len(boxes) > 1:
        distinct = list(dict.fromkeys(normalize(b) for b in boxes))
        if len(distinct) > 1 and not all(fast_compare(d, distinct[0]) is True for d in distinct[1:]):
            return MathResult(extracted, False, "wrong", "multiple_boxed"), extracted
    fast = fast_compare(extracted, str(gold))
    if fast is True:
        return MathResult(extracted, True, "correct", "fast path: equal"), extracted
    if fast is False:
        return MathResult(extracted, False, "wrong", "fast path: numbers differ"), extracted
    return None, extracted


# --------------------------------------------------------------------------- worker side


_MV: dict[str, Any] = {}


def _load_math_verify() -> None:
    if _MV:
        return
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)
    norm = NormalizationConfig(basic_latex=True, units=True, malformed_operators=False, nits=False,
                               boxed="all", equations=False)  # fmt: skip
    _MV.update(
        parse=parse,
        verify=verify,
        config=[LatexExtractionConfig(boxed_match_priority=0, normalization_config=norm), ExprExtractionConfig()],
    )


def _parse(s: str) -> list:
    return _MV["parse"](s, extraction_config=_MV["config"], parsing_timeout=None)


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> list:
    return _parse(wrap_math(gold))


def math_verify_compare(pred: str, gold: str) -> tuple[bool | None, str]:
    """math-verify's verdict on ``pred`` against ``gold`` (no timeout: call it in a worker)."""
    _load_math_verify()
    gold_p = _parse_gold(gold)
    if not gold_p:
        return None, "could not parse gold answer"
    pred_p = _parse(wrap_math(pred))
    if not pred_p:
        return False, "could not parse extracted answer"
    ok = bool(_MV["verify"](gold_p, pred_p, timeout_seconds=None))
    return ok, "math-verify"


def _worker_main(conn: Any) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_BYTES, _WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    try:
        _load_math_verify()
        conn.send(("ready", None))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        conn.send(("fatal", f"{type(e).__name__}: {e}"))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        idx, pred, gold = msg
        try:
            ok, reason = math_verify_compare(pred, gold)
        except BaseException as e:  # noqa: BLE001 - MemoryError, RecursionError, sympy errors
            ok, reason = None, f"{type(e).__name__}: {str(e)[:200]}"
        try:
            conn.send((idx, ok, reason))
        except (EOFError, OSError):
            return


# --------------------------------------------------------------------------- pool


def _worker_entry(fd: int) -> None:
    """Entry point of a worker process started by :class:`_Worker` (``python -c``)."""
    from multiprocessing.connection import Connection

    _worker_main(Connection(fd))


_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Worker:
    """One math-verify worker: a plain ``python -c`` subprocess talking over a socketpair.

    Not ``multiprocessing.Process``: spawn re-imports the caller's ``__main__``, which
    breaks scripts without an ``if __name__ == "__main__"`` guard.
    """

    def __init__(self) -> None:
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_ROOT, env.get("PYTHONPATH", "")) if p)
        code = "import sys; from fusedata.verifiers.math import _worker_entry; _worker_entry(int(sys.argv[1]))"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        self.ready = False
        self.started = time.monotonic()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort
            pass
        try:
            self.conn.close()
        except OSError:
            pass

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.proc.wait(timeout=2)
        except Exception:  # noqa: BLE001 - fall back to kill
            pass
        if self.proc.poll() is None:
            self.kill()
        else:
            try:
                self.conn.close()
            except OSError:
                pass


class _MathPool:
    """Spawned math-verify workers, one pipe each, so a hung item costs only its own worker."""

    def __init__(self, size: int):
        self.size = size
        self.start_failures = 0
        self.slots: list[_Worker | None] = [None] * size
        self.fatal: str | None = None

    def close(self) -> None:
        for i, w in enumerate(self.slots):
            if w is not None:
                w.stop()
            self.slots[i] = None

    def run(self, items: list[tuple[int, str, str]], timeout: float) -> dict[int, tuple[str, bool, str]]:
        """Verify (idx, pred, gold) items; returns idx -> (label, correct, reason)."""
        results: dict[int, tuple[str, bool, str]] = {}
        todo = deque(items)
        busy: dict[int, tuple[int, float]] = {}  # slot -> (item idx, deadline)
        wanted = min(self.size, len(todo))
        while todo or busy:
            if self.fatal is not None:
                for idx, _, _ in todo:
                    results[idx] = ("error", False, f"math-verify unavailable: {self.fatal}")
                todo.clear()
                if not busy:
                    break
            self._dispatch(todo, busy, wanted, timeout)
            waiting = {w.conn: i for i, w in enumerate(self.slots) if w is not None and (not w.ready or i in busy)}
            if not waiting:
                continue
            deadlines = [dl for _, dl in busy.values()]
            deadlines += [w.started + _WORKER_START_TIMEOUT_S for w in self.slots if w is not None and not w.ready]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
            for conn in _mp_wait(list(waiting), timeout=wait_s):
                self._receive(waiting[conn], busy, results)
            self._expire(busy, results, timeout)
        return results

    def _dispatch(self, todo: deque, busy: dict[int, tuple[int, float]], wanted: int, timeout: float) -> None:
        """Keep enough workers alive; hand the next items to the idle ready ones."""
        for i in range(wanted):
            if self.slots[i] is None and todo and self.fatal is None:
                self.slots[i] = _Worker()
        now = time.monotonic()
        for i, w in enumerate(self.slots):
            if w is not None and w.ready and i not in busy and todo:
                item = todo.popleft()
                try:
                    w.conn.send(item)
                except (OSError, ValueError):
                    todo.appendleft(item)
                    w.kill()
                    self.slots[i] = None
                    continue
                busy[i] = (item[0], now + timeout)

    def _receive(self, i: int, busy: dict[int, tuple[int, float]], results: dict[int, tuple[str, bool, str]]) -> None:
        """Take one message from slot ``i``'s worker: its start-up report, a verdict, or its death."""
        w = self.slots[i]
        assert w is not None
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            msg = None
        if msg is None:  # the worker died (crash, OOM kill)
            if not w.ready:
                self.start_failures += 1
                if self.start_failures >= 3:
                    self.fatal = f"worker process exits at start-up (exit status {w.proc.poll()})"
            if i in busy:
                idx, _ = busy.pop(i)
                results[idx] = ("error", False, "verifier worker died")
            w.kill()
            self.slots[i] = None
            return
        if not w.ready:
            if msg[0] == "ready":
                w.ready = True
                self.start_failures = 0
            else:
                self.fatal = str(msg[1])
                w.kill()
                self.slots[i] = None
            return
        idx, ok, reason = msg
        busy.pop(i, None)
        if ok is None:
            results[idx] = ("error", False, reason)
        else:
            results[idx] = ("correct" if ok else "wrong", bool(ok), reason)

    def _expire(self, busy: dict[int, tuple[int, float]], results: dict[int, tuple[str, bool, str]],
                timeout: float) -> None:
        """Kill the workers whose item overran ``timeout`` and those that did not start in time."""
        now = time.monotonic()
        for i, (idx, dl) in list(busy.items()):
            if now >= dl:
                results[idx] = ("timeout", False, f"verification exceeded {timeout:g}s")
                busy.pop(i)
                w = self.slots[i]
                if w is not None:
                    w.kill()
                self.slots[i] = None
        for i, w in enumerate(self.slots):
            if w is not None and not w.ready and now - w.started > _WORKER_START_TIMEOUT_S:
                w.kill()
                self.slots[i] = None
                self.fatal = "worker did not start in time"


_pool: _MathPool | None = None
_pool_lock = threading.Lock()


def close_math_pool() -> None:
    """Stop the math-verify worker processes (they restart on the next call)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
            _pool = None


atexit.register(close_math_pool)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def verify_math_batch(
    items: list[tuple[str, str | None]], *, timeout: float = 5.0, workers: int | None = None
) -> list[MathResult]:
    """Verify ``(response_text, gold)`` pairs; results in input order.

    Never raises for a bad item: no gold → label "error"; no extractable answer →
    "no_answer"; math-verify overrunning ``timeout`` seconds → "timeout" (its worker is
    killed and replaced).
    """
    global _pool
    results: list[MathResult | None] = [None] * len(items)
    slow: list[tuple[int, str, str]] = []
    extracted: dict[int, str | None] = {}
    for idx, (text, gold) in enumerate(items):
        try:
            res, ex = _precheck(text, gold)
        except Exception as e:  # noqa: BLE001 - one odd item must not sink the batch
            res, ex = MathResult(None, False, "error", f"extraction failed: {type(e).__name__}: {e}"), None
        if res is not None:
            results[idx] = res
        else:
            assert ex is not None and gold is not None
            extracted[idx] = ex
            slow.append((idx, ex, str(gold)))
    if slow:
        size = max(1, workers or _default_workers())
        with _pool_lock:
            if _pool is not None and _pool.size != size:
                _pool.close()
                _pool = None
            if _pool is None:
                _pool = _MathPool(size)
            verdicts = _pool.run(slow, timeout)
        for idx, _, _ in slow:
            label, ok, reason = verdicts.get(idx, ("error", False, "not verified"))
            results[idx] = MathResult(extracted[idx], ok, label, reason)
    return [r for r in results if r is not None]
