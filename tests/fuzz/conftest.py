"""Hypothesis profiles for the parser fuzzers.

`ci` (the default, what `make test` runs): a few hundred examples per parser, ~10 s in all.
`long`: many more, for a fuzzing session: pytest tests/fuzz --hypothesis-profile=long
A parser that takes longer than the deadline on one input counts as a hang.
"""
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=250, deadline=2000, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20000, deadline=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
