"""The registry's pure domain: enterprises, emission accounting, quotas, compliance, evaluation.

No I/O, no clock, no randomness, no floats: everything here is decided from the
commands it is given (time included) with :class:`decimal.Decimal` arithmetic in a fixed
context, so the engine that hosts it stays deterministic.
"""
