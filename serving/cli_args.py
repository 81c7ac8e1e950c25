"""Old flag spellings of zoo-export and zoo-query: still accepted, with a deprecation warning.

The same action as `tuning.cli_args.add_deprecated` (serving does not import tuning); the flag
vocabulary of the four tools is written down once, in tuning/README.md.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

__all__ = ["add_deprecated", "deprecated_spellings"]


class _Deprecated(argparse.Action):
    """An old spelling: warns on stderr naming the new flag, then stores as the new one does."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "",
                 convert: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        self.new, self.convert = new, convert
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}",
              file=sys.stderr, flush=True)
        setattr(namespace, self.dest, self.convert(values) if self.convert else values)


def add_deprecated(parser: argparse.ArgumentParser, old: str, new: str, dest: str, *,
                   type: Callable[[str], Any] | None = None,
                   convert: Callable[[Any], Any] | None = None) -> None:
    """Accept `old` as the flag `new` (same dest) with a warning; hidden from `--help`."""
    kwargs: dict[str, Any] = {"dest": dest, "new": new, "convert": convert, "help": argparse.SUPPRESS}
    if type is not None:
        kwargs["type"] = type
    parser.add_argument(old, action=_Deprecated, **kwargs)


def deprecated_spellings(parser: argparse.ArgumentParser) -> dict[str, str]:
    """old flag -> the flag to use instead, for every deprecated spelling `parser` accepts."""
    return {opt: a.new for a in parser._actions if isinstance(a, _Deprecated)
            for opt in a.option_strings}
