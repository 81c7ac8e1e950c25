"""The argument parser every cnn-zoo command-line tool uses, and their exit codes.

Usage errors are one line on stderr and exit 2 (`prog: error: message`), with no usage block: scripts
and CI logs show exactly what was wrong. Old flag spellings stay accepted through
`deprecated_alias`, with a warning that names the new one.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn

__all__ = ["EXIT_USAGE", "EXIT_INTERRUPTED", "OneLineParser", "csv_list", "deprecated_alias", "fail"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a job stopped by Ctrl-C


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, `prog: error: message (see prog --help)`, and exit 2."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see {self.prog} --help)")


def fail(prog: str, message: str) -> NoReturn:
    """Print `prog: error: message` on stderr and exit with the usage status."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def csv_list(kind: type = str) -> Callable[[str], list]:
    """An argparse type: a comma-separated list of `kind` (ints may use _ separators)."""
    def parse(text: str) -> list:
        items = [s.strip() for s in text.split(",") if s.strip()]
        try:
            return [kind(s.replace("_", "")) if kind is int else kind(s) for s in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, "
                                             f"got {text!r}") from None
    return parse


def deprecated_alias(new: str) -> type[argparse.Action]:
    """An argparse action for an old spelling: stores like `new` and warns once on stderr."""
    class _Deprecated(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                     values: Any, option_string: str | None = None) -> None:
            sys.stderr.write(f"{parser.prog}: warning: {option_string} is deprecated, use {new}\n")
            setattr(namespace, self.dest, values)
    return _Deprecated
