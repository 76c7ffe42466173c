"""Upstream judge artefacts read at run time: FastChat's, arena-hard-auto's and alpaca_eval's own texts.

fusekit keeps no copy of upstream judge prompts. Each one is read from where it is published —
an installed PyPI distribution that ships it (found through ``importlib.metadata`` without
importing the package), or a checkout of the upstream repository given with ``data_dir`` — and
checked against a sha256 pin before a byte of it is used: a different text is a different judge,
and LC is calibrated for one exact prompt. The pins and where each text lives are in
``docs/evals.md#judge-prompts``.

``data_dir`` may be the checkout's root or any folder inside it (the bench data folder, say): the
file is looked up under that folder and each of its parents.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from fusedata.errors import FusekitError
from fusedata.records import sha256_hex

# How far above data_dir a checkout's root may be (arena-hard-auto: data/arena-hard-v0.1 → root).
_PARENTS = 5
OFFLINE_FALLBACK = "fusekit-1"


@dataclass(frozen=True)
class UpstreamFile:
    """One upstream file: where it is published and, when the whole file is pinned, its sha256.

    ``sha256`` None means the caller pins the pieces it extracts (:func:`check_pin`), for texts
    that different distributions carry inside different files.
    """

    label: str  # "<project>:<path in the upstream repository>", for messages and the manifest
    checkout_path: str  # path inside a checkout of the upstream repository
    package: str | None = None  # "name==version" of a distribution shipping the file
    package_path: str | None = None  # the file's path inside that distribution
    sha256: str | None = None


@dataclass(frozen=True)
class UpstreamText:
    """A file's text and where it was read (an absolute path)."""

    text: str
    path: str
    sha256: str


def _candidates(f: UpstreamFile, data_dir: str | None) -> list[Path]:
    out: list[Path] = []
    if data_dir is not None:
        start = Path(data_dir).expanduser().resolve()
        out += [p / f.checkout_path for p in [start, *start.parents][: _PARENTS + 1]]
    if f.package and f.package_path:
        try:
            dist = metadata.distribution(f.package.split("==")[0])
        except metadata.PackageNotFoundError:
            pass
        else:
            out.append(Path(dist.locate_file(f.package_path)))
    return out


def _hint(f: UpstreamFile) -> str:
    where = f"`pip install --no-deps {f.package}`, or " if f.package else ""
    return (f"{where}pass --data-dir inside a checkout of {f.label.split(':', 1)[0]} holding {f.checkout_path}; "
            f"for offline smoke runs only, --prompt {OFFLINE_FALLBACK} uses fusekit's paraphrases "
            "(not leaderboard-comparable)")


def read_upstream(f: UpstreamFile, data_dir: str | None = None) -> UpstreamText:
    """The file's text from the first place that has it; ``FusekitError`` when none has it or a
    whole-file pin does not match."""
    for path in _candidates(f, data_dir):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        actual = hashlib.sha256(raw).hexdigest()
        if f.sha256 is not None and actual != f.sha256:
            raise FusekitError(f"{f.label}: {path} is not the pinned upstream file: sha256 expected {f.sha256}, "
                               f"got {actual}; {_hint(f)}")
        return UpstreamText(raw.decode("utf-8"), str(path), actual)
    raise FusekitError(f"upstream judge prompt {f.label} not found; {_hint(f)}")


def check_pin(text: str, pin: str, what: str, source: UpstreamText) -> str:
    """``text`` (a piece extracted from ``source``) when its sha256 equals ``pin``."""
    actual = sha256_hex(text)
    if actual != pin:
        raise FusekitError(f"{what} read from {source.path} is not the pinned upstream text: sha256 expected "
                           f"{pin}, got {actual}; pass --data-dir inside a checkout at the pinned version, or "
                           f"--prompt {OFFLINE_FALLBACK} for offline smoke runs")
    return text


def version(sha256: str) -> str:
    """The prompt version an upstream text carries into every judge cache key."""
    return f"upstream-{sha256[:12]}"
