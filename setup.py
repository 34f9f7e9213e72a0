"""Build hook: compile the matching engine with mypyc, and the C loops of the hash
chain and the codec (events/_speedups.c), when this machine can.

Everything else about the package is in pyproject.toml. Both are accelerators, never
requirements: with ``CARBONX_PURE=1``, without a C compiler or Python's headers, or
when a C build fails (the C loops also need OpenSSL's headers), carbonx installs that
part as pure Python and runs the same (services/exchange/native.py explains how the
engine's binaries are kept honest; events/chain.py loads the C loops).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
EXCHANGE = ROOT / "services" / "exchange"
EVENTS = ROOT / "events"
#: The C loops of the chain and the codec (events/_speedups.c), as ``events._speedups``.
SPEEDUPS = "events._speedups"


def _native() -> ModuleType:
    """services/exchange/native.py, loaded by path (the package itself is not importable
    from an isolated build environment, nor needed)."""
    spec = importlib.util.spec_from_file_location("_carbonx_native", EXCHANGE / "native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _say(message: str) -> None:
    print(f"carbonx setup: {message}", file=sys.stderr)


def _cannot_compile() -> str | None:
    """Why no C extension can be built here, or None."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed"
    return None


#: The setup commands that build code; the others (egg_info, dist_info: pip asks for
#: metadata twice before it builds) need no compiler run, which costs ~10 s each.
BUILDS = frozenset(
    ("build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install", "bdist_egg")
)


def _speedups_artefacts() -> list[Path]:
    return sorted(EVENTS.glob("_speedups.*.so")) + sorted(EVENTS.glob("_speedups.*.pyd"))


def _ext_modules() -> list[Extension]:
    if BUILDS.isdisjoint(sys.argv[1:]):
        return []
    native = _native()
    # Binaries of an earlier build never outlive this one (the new build writes its own).
    for path in [*native.artefacts(EXCHANGE), *_speedups_artefacts()]:
        path.unlink()
    reason = f"{native.PURE_ENV} is set" if native.pure_requested(os.environ) else _cannot_compile()
    if reason is not None:
        _say(f"installing the pure-Python engine, chain and codec loops: {reason}")
        return []
    from mypyc.build import mypycify

    source = EVENTS / "_speedups.c"
    speedups = Extension(
        SPEEDUPS,
        sources=["events/_speedups.c"],
        libraries=["crypto"],
        extra_compile_args=["-O2"],
        # The binary carries its source's digest: events/chain.py runs it only while
        # the source on disk is the one it was built from.
        define_macros=[("SOURCE_SHA256", f'"{hashlib.sha256(source.read_bytes()).hexdigest()}"')],
    )

    stamp = EXCHANGE / f"{native.STAMP}.py"
    stamp.write_text(native.stamp_source(EXCHANGE))
    modules = [*native.COMPILED, native.STAMP]
    _say(f"compiling {', '.join(native.COMPILED)} with mypyc")
    os.chdir(ROOT)  # mypyc names modules by their paths from here
    return [
        speedups,
        *mypycify(
            [
                # carbonx's dependencies are not installed yet when pip builds it (a fresh
                # clone's `make test`): their names are Any here, and the strict checks that
                # Any trips are off. Only the compiled modules are checked; `make lint` runs
                # the strict mypy over everything.
                "--ignore-missing-imports",
                "--follow-imports=silent",
                "--no-warn-return-any",
                "--allow-subclassing-any",
                *(f"services/exchange/{name}.py" for name in modules),
            ],
            opt_level="3",
            group_name=f"services.exchange.{native.GROUP}",
        ),
    ]


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python when a C build fails: the C loops alone
    (say OpenSSL's headers are missing), or the engine alone."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:  # any compiler or linker failure
            if ext.name == SPEEDUPS:
                _say(f"compiling events/_speedups.c failed ({error}): its loops run in Python")
                for path in _speedups_artefacts():
                    path.unlink()
                return
            raise

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # any compiler or linker failure
            _say(f"compiling the engine failed ({error}): installing pure Python")
            for path in _native().artefacts(EXCHANGE):
                path.unlink()
            self.extensions = []


def main() -> None:
    options: dict[str, Any] = {"ext_modules": _ext_modules(), "cmdclass": {}}
    if options["ext_modules"]:
        options["cmdclass"]["build_ext"] = OptionalBuildExt
    setup(**options)


main()
