"""The argument parser every cnn-zoo command-line tool uses, and their exit codes.

Nothing heavy is imported here (not even numpy): `--help` and usage errors answer at once. The
flag vocabulary of the five tools is written down once, in tuning/README.md; tests check the
parsers against that table.

Usage errors are one line on stderr and exit 2 (`prog: error: message`), with no usage block: scripts
and CI logs show exactly what was wrong. Old flag spellings stay accepted through
`add_deprecated`, with a warning that names the new one.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn, Sequence

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "OneLineParser", "csv_list", "fail", "add_deprecated",
           "range_or_value", "deprecated_spellings", "flag_words"]

EXIT_FAILED = 1  # the input was fine but the job produced nothing (e.g. no trial completed)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a job stopped by Ctrl-C


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, `prog: error: message (see prog --help)`, and exit 2.

    Abbreviated flags are refused: argparse would take `--batch-size` for `--batch-sizes` (or
    for an old spelling's new flag) silently, and a later flag could make it ambiguous."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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


def range_or_value(values: Sequence[int], flag: str) -> tuple[int, int]:
    """`--depth 6` or `--depth 4 8` (nargs='+'): (6, 6) or (4, 8)."""
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(f"{flag} takes N or MIN MAX, got {len(values)} values")


class _Deprecated(argparse.Action):
    """An old spelling: warns on stderr naming the new flag, then stores as the new one does
    (`convert` maps the old value to the new flag's, e.g. a string to a one-item list)."""

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
                   type: Callable[[str], Any] | None = None, nargs: Any = None,
                   convert: Callable[[Any], Any] | None = None, metavar: str | None = None) -> None:
    """Accept the old flag spelling `old` as `new` (same dest), with a deprecation warning.

    Hidden from `--help` (the help lists the current vocabulary only)."""
    kwargs: dict[str, Any] = {"dest": dest, "new": new, "convert": convert,
                              "help": argparse.SUPPRESS}
    if type is not None:
        kwargs["type"] = type
    if nargs is not None:
        kwargs["nargs"] = nargs
    if metavar is not None:
        kwargs["metavar"] = metavar
    parser.add_argument(old, action=_Deprecated, **kwargs)


def deprecated_spellings(parser: argparse.ArgumentParser) -> dict[str, str]:
    """old flag -> the flag to use instead, for every deprecated spelling `parser` accepts."""
    return {opt: a.new for a in parser._actions if isinstance(a, _Deprecated)
            for opt in a.option_strings}


def flag_words(message: str, flags: dict[str, str], negated: dict[str, str] | None = None) -> str:
    """`message` (written for Python callers, naming keywords) in a CLI's words: a keyword
    `name` in `flags` becomes its flag (`downsample_every` -> `--downsample-every`), `name=True`
    becomes the flag, `name=False` the `negated` flag (`fill_budget=False` -> `--no-fill-budget`)
    and `name='x'` / `name=x` becomes `--flag x`.

    Plain words that are also keywords (depth, rules) are left alone unless written `name=...`,
    in backticks, in snake_case or as the subject that opens the message ("export must be ..."):
    in prose they read as words, not flags.
    """
    import re

    message = re.sub(r"`([a-z][a-z0-9_]*)`",
                     lambda m: flags.get(m.group(1), m.group(0)), message)
    # "export must be an int ...": a keyword that opens the message or a clause is the subject
    message = re.sub(r"(^|; )([a-z][a-z0-9]*) (must|only|is empty)\b",
                     lambda m: (f"{m.group(1)}{flags[m.group(2)]} {m.group(3)}"
                                if m.group(2) in flags else m.group(0)), message)

    def keyword(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if name not in flags:
            return m.group(0)
        if value is None:
            return flags[name] if "_" in name else m.group(0)
        if value == "True":
            return flags[name]
        if value == "False" and negated and name in negated:
            return negated[name]
        return f"{flags[name]} {value.strip(chr(39) + chr(34))}"

    return re.sub(r"(?<![\w.-])([a-z][a-z0-9]*(?:_[a-z0-9]+)*)(?:=('[^']*'|\"[^\"]*\"|[\w.+-]+))?"
                  r"(?![\w(])", keyword, message)
