"""Internal utilities: argument validation, registries, NAME:key=value parsing, exact numbers,
JSON helpers and floating-point formats.  Imports nothing else from varprop."""
