"""What a run's judge calls cost: tokens × a per-model price table that a YAML file can override.

Prices are US dollars per million tokens (input, output), as the providers list them on
2026-11; they drift, so ``--prices FILE`` (``{model: {input: x, output: y}}``) replaces or adds
entries. A judge that is not in the table has an unknown cost (``None``), which the report says
instead of printing a made-up zero; in-process and loopback judges cost nothing by definition.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from fusedata.errors import FusekitError

PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-0613": (30.0, 60.0),
    "gpt-4": (30.0, 60.0),
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4-0125-preview": (10.0, 30.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4-turbo-2024-04-09": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-2024-08-06": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o-mini-2024-07-18": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-2025-04-14": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-3.5-turbo": (0.5, 1.5),
}


def load_prices(path: str | Path | None) -> dict[str, tuple[float, float]]:
    """The default table, updated from ``path`` when given."""
    table = dict(PRICES)
    if path is None:
        return table
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise FusekitError(f"cannot read price table {path}: {e}") from None
    if not isinstance(data, dict):
        raise FusekitError(f"price table {path}: expected a mapping of model -> {{input, output}}")
    for model, entry in data.items():
        try:
            table[str(model)] = (float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError):
            raise FusekitError(
                f"price table {path}: entry {model!r} needs numeric 'input' and 'output' ($ per 1M tokens)"
            ) from None
    return table


def cost_usd(judge: str, prompt_tokens: int, completion_tokens: int, *, local: bool,
             prices: dict[str, tuple[float, float]]) -> float | None:
    """Dollars for the given usage; 0 for a local judge, None when the judge has no price."""
    if local:
        return 0.0
    if judge not in prices:
        return None
    p_in, p_out = prices[judge]
    return (prompt_tokens * p_in + completion_tokens * p_out) / 1e6
