"""The `governor` command line: one thin module per command, calling into the subsystems.

`main` is the console-script entry point (`governor = controller.cli:main`).
"""

from controller.cli.main import main

__all__ = ["main"]
