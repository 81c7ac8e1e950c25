"""The rule registry: `@register(name)` adds a filter-growth rule, `list_models` and `get_rule` find it.

A rule is a pure function of one layer's position (no Keras needed). Its keyword-only parameters,
with their defaults, are its tunable knobs; an optional `space` tells the tuner their ranges.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

__all__ = ["LayerContext", "Rule", "register", "get_rule", "list_models", "unregister"]


@dataclass(frozen=True)
class LayerContext:
    """What a rule may look at when it sizes one layer."""

    index: int  # 0-based layer index
    depth: int  # number of convolutional layers
    base_filters: int  # the width a rule starts from
    stage: int  # downsamples applied before this layer
    num_stages: int  # downsamples in the whole network
    previous: int | None  # the previous layer's final (rounded, clamped) count

    @property
    def fraction(self) -> float:
        """Position in [0, 1] along the depth (0 = first layer, 1 = last)."""
        return self.index / max(self.depth - 1, 1)


RuleFn = Callable[..., float]


@dataclass(frozen=True)
class Rule:
    name: str
    fn: RuleFn
    params: Mapping[str, Any]  # keyword-only parameters and their defaults
    space: Mapping[str, Any] = field(default_factory=dict)  # tuner ranges per parameter
    description: str = ""

    def check_kwargs(self, kwargs: Mapping[str, Any], *, caller: str | None = None,
                     caller_keywords: Sequence[str] = ()) -> None:
        """TypeError for keywords the rule does not take; `caller` (e.g. "build") and its own
        `caller_keywords` make the message name both lists, since an unknown keyword of `build`
        is as likely a typo of one of build's as a rule parameter."""
        unknown = sorted(set(kwargs) - set(self.params))
        if not unknown:
            return
        valid = ", ".join(sorted(self.params)) or "none"
        if caller is None:
            raise TypeError(
                f"rule {self.name!r} got unexpected keyword argument(s) {', '.join(unknown)}; "
                f"its parameters are: {valid}"
            )
        candidates = [*caller_keywords, *self.params]
        guesses = [m for u in unknown for m in difflib.get_close_matches(u, candidates, n=1)]
        hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        raise TypeError(
            f"{caller}() got unexpected keyword argument(s) {', '.join(unknown)}{hint}; "
            f"{caller}'s keywords are: {', '.join(caller_keywords)}; rule {self.name!r} "
            f"takes: {valid}"
        )

    def __call__(self, layer: LayerContext, **kwargs: Any) -> float:
        return self.fn(layer, **kwargs)


_RULES: dict[str, Rule] = {}


def keyword_names(fn: Callable[..., Any]) -> list[str]:
    """The keyword-only parameter names of `fn`, in order (for messages about unknown keywords)."""
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY]


def _keyword_params(fn: RuleFn) -> dict[str, Any]:
    sig = inspect.signature(fn)
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != 1:
        raise TypeError(f"a rule takes exactly one positional argument (the LayerContext); "
                        f"{fn.__name__} takes {len(positional)}")
    return {
        p.name: (None if p.default is p.empty else p.default)
        for p in sig.parameters.values()
        if p.kind == p.KEYWORD_ONLY
    }


def register(name: str, *, space: Mapping[str, Any] | None = None,
             overwrite: bool = False) -> Callable[[RuleFn], RuleFn]:
    """Register a filter-growth rule under `name` (a decorator, like timm's `register_model`).

    The decorated function takes a `LayerContext` and keyword-only parameters, and returns the
    (unrounded) filter count of that layer. `space` maps parameter names to tuner ranges:
    `(low, high)` ints or floats, or a list of choices.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"rule name must be a Python identifier-like string, got {name!r}")

    def decorator(fn: RuleFn) -> RuleFn:
        if name in _RULES and not overwrite:
            raise ValueError(f"rule {name!r} is already registered (pass overwrite=True to replace it)")
        params = _keyword_params(fn)
        unknown = sorted(set(space or {}) - set(params))
        if unknown:
            raise ValueError(f"space names parameters {unknown} that rule {name!r} does not take")
        doc = inspect.getdoc(fn) or ""
        _RULES[name] = Rule(name, fn, params, dict(space or {}), doc.splitlines()[0] if doc else "")
        return fn

    return decorator


def unregister(name: str) -> None:
    """Remove a user rule (mostly for tests)."""
    get_rule(name)
    del _RULES[name]


def get_rule(name: str) -> Rule:
    if not isinstance(name, str) or name not in _RULES:
        raise ValueError(f"unknown rule {name!r}; valid rules: {', '.join(list_models())}")
    return _RULES[name]


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered rule names, optionally filtered by a shell-style pattern (`'*ing'`)."""
    names = sorted(_RULES)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
