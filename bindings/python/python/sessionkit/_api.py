"""The generated classes' arguments checked, and their docstrings taken from the stubs.

``__init__.pyi`` is the one place the Python API is typed and documented (what each call
returns, in which units, which ``AppError`` variants it raises); ``help()`` at runtime shows the
same text, copied from it here, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import pathlib
import typing

from . import _checks
from ._native import sessionkit_ffi as _ffi

_STUB = pathlib.Path(__file__).with_name("__init__.pyi")


def _docstrings() -> typing.Dict[str, str]:
    """``{"User.call_function": "...", "User": "...", ...}`` from the stub."""
    found: typing.Dict[str, str] = {}

    def walk(nodes: typing.Iterable[ast.stmt], prefix: str) -> None:
        for node in nodes:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    found[prefix + node.name] = doc
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")

    try:
        walk(ast.parse(_STUB.read_text(encoding="utf-8")).body, "")
    except OSError:
        pass  # installed without the stubs: the generated docstrings stay
    return found


def _resolve(path: str) -> typing.Tuple[typing.Any, str]:
    owner: typing.Any = _ffi
    *outer, last = path.split(".")
    for part in outer:
        owner = getattr(owner, part)
    return owner, last


def _install_docs() -> None:
    for path, doc in _docstrings().items():
        try:
            owner, name = _resolve(path)
            target = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
        except AttributeError:
            continue  # a stub-only helper (a Protocol, a type alias)
        if target is None:
            continue
        if isinstance(target, property):
            continue  # set where the property is made
        try:
            target.__doc__ = doc
        except (AttributeError, TypeError):
            pass  # enum members and builtins keep theirs


def install() -> None:
    """Checks the arguments of every public method and input-value constructor."""
    _install_docs()
    services: typing.List[type] = [
        _ffi.App, _ffi.User, _ffi.ApiKeyAuth, _ffi.EmailPasswordAuth, _ffi.EmailOtpAuth
    ]
    for cls in services:
        _checks.install_on(cls, constructor=cls is _ffi.App)
    variants = [
        v
        for enum_like in (_ffi.Credentials, _ffi.StorageConfig)
        for v in vars(enum_like).values()
        if isinstance(v, type) and issubclass(v, enum_like)
    ]
    for value_cls in (_ffi.AppConfig, _ffi.DeviceInfo, *variants):
        _checks.install_on(value_cls, constructor=True)
    # Callback interfaces: subclassing is documented, an object with the methods works too.
    interfaces = (
        _ffi.SessionStore, _ffi.Logger, _ffi.AuthEventListener, _ffi.SessionErrorHandler,
        _ffi.DpopSigner,
    )
    _checks.allow_duck_typing(*interfaces)
    for interface in interfaces:
        _accept_duck_typed(interface)


def _accept_duck_typed(interface: type) -> None:
    """Lets the generated lowering take an object with the interface's methods, as the argument
    checks do: it hands any object to Rust through its handle map, but its check insists on a
    subclass (a duck-typed ``dpop_signer`` or session error handler raised ``TypeError`` at
    ``App(config)`` or ``set_session_error_handler``)."""
    converter = getattr(_ffi, f"_UniffiFfiConverterType{interface.__name__}")
    generated = converter.check_lower
    names = [n for n, v in vars(interface).items() if not n.startswith("_") and callable(v)]

    def check_lower(value: object) -> None:
        if isinstance(value, interface) or all(callable(getattr(value, n, None)) for n in names):
            return
        generated(value)

    converter.check_lower = staticmethod(check_lower)
