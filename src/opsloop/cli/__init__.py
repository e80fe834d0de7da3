"""The ``opsloop`` command line. Every verb calls the same library API the server uses."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="opsloop",
    help="Data Operations in one pip install: webhooks, workflows, warehouse, models, syncs, dashboards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain Click help: typer's Rich help imports rich.markdown and pygments (~0.4 s) before printing a line
    rich_markup_mode=None,
    add_completion=False,
)

def _register_all() -> None:
    """Every ``opsloop/cli/_<name>.py`` module with a ``register(app)`` adds its verbs."""
    import importlib
    import pkgutil

    from . import _project

    _project.register(app)
    _project.register_demo(app)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") and info.name not in ("_common", "_project"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            if hasattr(module, "register"):
                module.register(app)


_register_all()


def main() -> None:
    """Entry point: user errors print one clear message, never a traceback."""
    from ..errors import ConfigError, OpsloopError, ServerError

    try:
        app()
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        sys.exit(1)
    except ServerError as exc:  # the running server's answer: its project problems as they print in-process
        sys.stderr.write("".join(f"{p}\n" for p in exc.problems) if exc.problems else f"error: {exc}\n")
        sys.exit(1)
    except OpsloopError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except OSError as exc:
        # a path the user gave (a missing folder, a file where a folder belongs, no permission)
        where = f" ({exc.filename})" if exc.filename else ""
        sys.stderr.write(f"error: {exc.strerror or exc}{where}; check the path and its permissions, then run the "
                         "command again\n")
        sys.exit(1)
    except (ValueError, OverflowError) as exc:
        # a value the user gave that a library refused (a date out of range, malformed JSON ...)
        sys.stderr.write(f"error: {exc}; check the values given to the command (see `opsloop COMMAND --help`)\n")
        sys.exit(1)
