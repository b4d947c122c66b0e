"""Evidence of this repository, generated with the derivation documents: the claims of the texts
varprop grew from (``shared/seeds/``), each checked against the library
(:mod:`seeds.claims`, written to ``derivations/seed-claims.md`` by ``varprop derive --all``).

Not part of the installed package: ``pyproject.toml`` lists the page under
``[tool.varprop] derive-pages`` and :mod:`varprop.documents.pages` imports it from the checkout.
"""
