"""Published models and guidelines as pure, typed functions (shared/reference/clinical-models.md).

One module per model (plcom2012, brock, mayo, va, lungrads, fleischner, eligibility, growth), a common result
envelope (result.py) and the registry the CLI and HTTP API use (registry.py). README.md documents the inputs,
outputs, rules and every decision taken where the sources conflict.
"""
