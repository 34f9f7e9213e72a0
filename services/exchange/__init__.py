"""The exchange: risk holds, matching and settlement in one deterministic engine.

`engine`, `book`, `serials`, `calendar` and `config` are pure domain code: no I/O, no
clock, no randomness, no floats. `runner` connects the engine to the store.

The engine's hot modules may be compiled with mypyc (see `native`): which build runs is
decided here, on the package's first import, before anything can import them.
"""

from services.exchange import native

native.select()
