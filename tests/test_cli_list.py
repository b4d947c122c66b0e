"""``varprop list``: every registered name, parameter default and alias, as text and JSON.

The expected names, defaults and aliases are checked against what the library accepts (each
listed name builds; each listed default is what a build without parameters uses) and against
facts stated independently here (PyTorch's ``elu`` has ``alpha=1.0``; ``glorot_normal`` is an alias
of ``xavier_normal``), not against the command's own output.
"""

from __future__ import annotations

import json

from varprop.cli import main
from varprop.components.activations import activation
from varprop.components.schemes import init_scheme


def _listing(capsys, *argv: str) -> dict:
    assert main(["list", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_activations_and_inits_with_defaults(capsys):
    data = _listing(capsys)
    acts = {e["name"]: e for e in data["activations"]}
    inits = {e["name"]: e for e in data["inits"]}
    # PyTorch's defaults: ELU(alpha=1.0), LeakyReLU(negative_slope=0.01), Softplus(beta=1)
    assert acts["elu"]["parameters"] == {"alpha": 1.0}
    assert acts["leaky_relu"]["parameters"] == {"negative_slope": 0.01}
    assert acts["softplus"]["parameters"] == {"beta": 1.0}
    assert acts["relu"]["parameters"] == {}
    assert "swish" in acts["silu"]["aliases"]
    assert "glorot_normal" in inits["xavier_normal"]["aliases"]
    assert inits["he_normal"]["parameters"] == {"mode": "fan_in", "negative_slope": 0.0}
    # framework-qualified names, tagged with their framework
    for name in ("keras:he_normal", "jax:lecun_normal", "torch:kaiming_normal"):
        assert inits[name]["framework"] == name.split(":")[0]
    assert inits["he_normal"]["framework"] == "varprop"


def test_every_listed_name_and_alias_builds(capsys):
    data = _listing(capsys)
    for e in data["activations"]:
        for name in [e["name"], *e["aliases"]]:
            assert activation(name) is not None
    for e in data["inits"]:
        for name in [e["name"], *e["aliases"]]:
            assert init_scheme(name) is not None


def test_listed_defaults_are_the_build_defaults(capsys):
    # building with the listed defaults spelled out gives the same object as building bare
    data = _listing(capsys, "activations")
    assert set(data) == {"activations"}
    for e in data["activations"]:
        if e["parameters"]:
            assert activation(e["name"], **e["parameters"]) == activation(e["name"])


def test_text_listing(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "elu" in out and "alpha=1.0" in out
    assert "keras:he_normal" in out and "aliases: glorot_normal" in out


def test_inits_only_and_bad_choice(capsys):
    data = _listing(capsys, "inits")
    assert set(data) == {"inits"}
    assert main(["list", "schemes"]) == 2
    assert "invalid choice" in capsys.readouterr().err
