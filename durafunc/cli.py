"""The `durafunc` command line: thin click commands that parse, call and print."""
from __future__ import annotations

import sys

import click

from . import __version__


class UserError(click.ClickException):
    """A one-line error: printed without a traceback, exit code 1."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-v", prog_name="durafunc")
def main() -> None:
    """durafunc: run Azure Durable Functions Python apps locally on Azurite."""


# ---------------------------------------------------------------------------------------------
# Each section below is owned by one part of the product; keep edits inside your section.
# ---------------------------------------------------------------------------------------------

# == host: start ==============================================================================

# == azurite ==================================================================================

# == scaffolding: init, new, templates ========================================================

# == instance management (func durable ...) ===================================================


if __name__ == "__main__":
    main(sys.argv[1:])
