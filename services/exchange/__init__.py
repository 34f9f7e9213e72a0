"""The exchange: risk holds, matching and settlement in one deterministic engine.

`engine`, `book`, `serials`, `calendar` and `config` are pure domain code: no I/O, no
clock, no randomness, no floats. `runner` connects the engine to the store.
"""
