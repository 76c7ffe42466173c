"""Recipe parsing, validation messages and CLI overrides."""

from __future__ import annotations

import pytest
import yaml

from fusedata import recipe
from fusedata.errors import FusekitError


def test_default_recipe_has_two_heterogeneous_sources_and_all_domains():
    r = recipe.load()
    assert set(r.domains) == {"math", "code", "instruction", "zh"}
    assert [m.engine.model for m in r.models] == ["embedded:smollm2-135m", "embedded:gemma3-270m"]
    assert r.target is not None and r.target.engine.model == "embedded:smollm2-135m"


def test_domains_override_keeps_only_named_domains():
    r = recipe.override(recipe.load(), domains=["math", "code"], limit=3, n=1)
    assert list(r.domains) == ["math", "code"]
    assert all(d.limit == 3 for d in r.domains.values())
    assert all(m.n_for("code") == 1 for m in r.models)


def _base() -> dict:
    return {"domains": {"math": ["embedded:math"]},
            "models": [{"name": "a", "model": "embedded:smollm2-135m", "sampling": {"n": 2},
                        "n_per_domain": {"math": 5}}]}


def test_n_per_domain_and_short_source_form():
    r = recipe.parse(_base())
    assert r.domains["math"].sources[0].name == "embedded:math"
    assert r.models[0].n_for("math") == 5 and r.models[0].n_for("code") == 2


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(modles=[]), "unknown key 'modles' (did you mean 'models'?)"),
        (lambda d: d["domains"].update(physics=["x"]), "unknown domain 'physics'"),
        (lambda d: d["models"][0].update(engine="tgi"), "unknown engine 'tgi'"),
        (lambda d: d["models"][0]["sampling"].update(temprature=0.5), "did you mean 'temperature'"),
        (lambda d: d["models"][0]["sampling"].update(max_tokens="many"), "sampling.max_tokens: expected int"),
        (lambda d: d["models"][0].update(engine="openai"), "engine 'openai' needs base_url"),
        (lambda d: d["models"][0].pop("model"), "needs 'model'"),
        (lambda d: d["models"].append(dict(d["models"][0])), "repeated: a"),
        (lambda d: d.update(models=[]), "'models' must list at least one"),
    ],
)
def test_bad_recipes_give_one_clear_message(mutate, message):
    d = _base()
    mutate(d)
    with pytest.raises(FusekitError) as e:
        recipe.parse(d)
    assert message in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(FusekitError, match="recipe file not found"):
        recipe.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("domains: [math\n")
    with pytest.raises(FusekitError, match="not valid YAML"):
        recipe.load(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(_base()))
    with pytest.raises(FusekitError, match="domain 'code' has no prompt sources"):
        recipe.override(recipe.load(ok), domains=["code"])
    with pytest.raises(FusekitError, match="unknown domain 'bio'"):
        recipe.override(recipe.load(ok), domains=["bio"])
    with pytest.raises(FusekitError, match="unknown model 'zz'"):
        recipe.override(recipe.load(ok), models=["zz"])
