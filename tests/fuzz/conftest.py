"""Hypothesis profiles for the parser fuzzers.

`ci` (the default, what `make test` runs): ~120 examples per parser, ~10 s in all. No per-input
deadline there (a loaded CI machine must not fail it); pytest-timeout catches a real hang.
`long`: 5,000 per parser, for a fuzzing session (minutes; lift the pytest timeout):
    pytest tests/fuzz --hypothesis-profile=long --timeout=0
There, a parser that takes longer than 2 s on one input counts as a hang.
"""
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=120, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
