"""Shared test configuration: a fixed hypothesis profile so property tests are deterministic."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "varprop",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("varprop")
