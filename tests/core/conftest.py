import os

from hypothesis import HealthCheck, settings

# "ci" keeps property tests quick on a shared 2-core machine and the same from run to run (a failure found by
# a random search belongs in a test of its own, not in whichever CI run happens on it); "thorough" searches
# at random, for local soak runs.
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
