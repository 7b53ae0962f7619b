"""Argument types checked at the call, from each method's own annotations.

Without this, a wrong type fails deep in the generated lowering code
(``AttributeError: 'str' object has no attribute 'is_ANONYMOUS'``). Every public method that
takes arguments is wrapped: its signature binds the call (so a missing or extra argument is
Python's usual ``TypeError``), and each argument is checked against its annotation::

    TypeError: log_in(): credentials must be a sessionkit.Credentials, not str

Only the shapes the API uses are understood (classes, ``Optional``/``Union``, ``List``);
anything else (``Any``, ``*args`` of JSON values) is let through for the call to judge.
A coroutine method raises when called, as Python does for a wrong argument count.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing

# Callback interfaces are documented as classes to subclass, but the SDK only calls their
# methods: an object that has them all is accepted too.
_duck_typed: typing.Set[type] = set()


def allow_duck_typing(*classes: type) -> None:
    _duck_typed.update(classes)


def _is_none(hint: object) -> bool:
    return hint is type(None) or hint is None


def _accepts(value: object, hint: object) -> bool:
    if type(value) is hint or hint is typing.Any or hint is object:  # the common case first
        return True
    if _is_none(hint):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        # The generated `Union[object, Optional[X]]` only makes room for a default sentinel.
        return any(_accepts(value, a) for a in typing.get_args(hint) if a is not object)
    if origin in (list, typing.List):
        (item,) = typing.get_args(hint) or (typing.Any,)
        return isinstance(value, list) and all(_accepts(v, item) for v in value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bytes:
        return isinstance(value, (bytes, bytearray, memoryview))
    if isinstance(hint, type):
        if isinstance(value, hint):
            return True
        if hint in _duck_typed:
            return all(
                callable(getattr(value, name, None))
                for name in vars(hint)
                if not name.startswith("_") and callable(vars(hint)[name])
            )
        return False
    return True


def _describe(hint: object) -> str:
    if _is_none(hint):
        return "None"
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        parts = [a for a in typing.get_args(hint) if a is not object]
        named = [_describe(a) for a in parts if not _is_none(a)]
        text = " or ".join(named)
        return f"{text} or None" if any(_is_none(a) for a in parts) else text
    if origin in (list, typing.List):
        args = typing.get_args(hint)
        return f"a list of {_plural(args[0])}" if args else "a list"
    if isinstance(hint, type):
        name = hint.__qualname__ if hint.__module__ == "builtins" else f"{hint.__module__}.{hint.__qualname__}"
        if hint is bytes:
            return "bytes"
        return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"
    return str(hint)


def _plural(hint: object) -> str:
    if isinstance(hint, type):
        return f"{hint.__module__}.{hint.__qualname__}" if hint.__module__ != "builtins" else hint.__qualname__
    return str(hint)


def checked(fn: typing.Callable[..., typing.Any], label: str) -> typing.Callable[..., typing.Any]:
    """``fn`` with its arguments checked; ``label`` names it in messages (``log_in``)."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    hints.pop("return", None)
    plain = {
        name: hints[name]
        for name, p in sig.parameters.items()
        if name in hints and name != "self"
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    if not plain:
        return fn

    positional = [
        p.name for p in sig.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    simple = len(positional) == len(sig.parameters)

    def check(args: typing.Tuple[object, ...], kwargs: typing.Dict[str, object]) -> None:
        if simple and not kwargs and len(args) == len(positional):
            # The usual call, every argument positional: no binding needed (it costs ~5 us).
            arguments: typing.Iterable[typing.Tuple[str, object]] = zip(positional, args)
        else:
            try:
                arguments = sig.bind(*args, **kwargs).arguments.items()
            except TypeError as e:
                raise TypeError(f"{label}(): {e}") from None
        for name, value in arguments:
            hint = plain.get(name)
            if hint is not None and not _accepts(value, hint):
                raise TypeError(
                    f"{label}(): {name} must be {_describe(hint)}, not {type(value).__name__}"
                )

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        def call_async(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            check(args, kwargs)
            return fn(*args, **kwargs)

        call_async.__signature__ = _shown(sig, hints)  # type: ignore[attr-defined]
        # Still a coroutine function to inspect (asyncio.iscoroutinefunction, IDEs).
        marker = getattr(inspect, "markcoroutinefunction", None)
        if marker is not None:
            return typing.cast(typing.Callable[..., typing.Any], marker(call_async))
        # Before 3.12 only asyncio's own marker exists (inspect's answer stays False there).
        call_async._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine", None)  # type: ignore[attr-defined]
        return call_async

    @functools.wraps(fn)
    def call(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        check(args, kwargs)
        return fn(*args, **kwargs)

    call.__signature__ = _shown(sig, hints)  # type: ignore[attr-defined]
    return call


def _shown(sig: inspect.Signature, hints: typing.Dict[str, typing.Any]) -> inspect.Signature:
    """The signature ``help()`` and notebooks show: the generated ``Union[object, Optional[X]]
    = <sentinel>`` of an optional parameter reads ``Optional[X] = None``, which it means."""
    params = []
    for p in sig.parameters.values():
        hint = hints.get(p.name)
        if typing.get_origin(hint) is typing.Union and object in typing.get_args(hint):
            rest = tuple(a for a in typing.get_args(hint) if a is not object)
            if type(None) in rest:
                p = p.replace(annotation=typing.Union[rest], default=None)
        elif type(p.default) is object and type(None) in typing.get_args(hint):
            p = p.replace(default=None)  # AppConfig's logger: the sentinel stands for None
        params.append(p)
    return sig.replace(parameters=params)


def install_on(cls: type, constructor: bool = False) -> None:
    """Checks the arguments of every public method of ``cls``, and of its constructor if told."""
    for name, fn in list(vars(cls).items()):
        if inspect.isfunction(fn) and not name.startswith("_"):
            setattr(cls, name, checked(fn, name))
    if constructor:
        # A generated enum variant inherits its constructor from the class it was made from.
        cls.__init__ = checked(cls.__init__, cls.__qualname__)  # type: ignore[misc]
