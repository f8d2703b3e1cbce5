"""The public API of mobilevit (export, engine, models, heads, weights, data, bench, cli, ablate) is
typed and documented: every public function and method has type hints and a docstring (its own,
or the one of the method it overrides), and those taking more than two arguments document them
(``Args:``), since the documentation site renders them."""

import importlib
import inspect
import pkgutil

import pytest


def _modules(package: str):
    pkg = importlib.import_module(f"mobilevit.{package}")
    yield pkg
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
        yield importlib.import_module(info.name)


def _public(package: str):
    seen = set()
    for module in _modules(package):
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__ or id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and inspect.isfunction(member):
                        yield f"{module.__name__}.{name}.{attr}", getattr(obj, attr)


@pytest.mark.parametrize(
    "package", ["export", "engine", "models", "heads", "weights", "data", "bench", "cli", "ablate"]
)
def test_public_functions_are_typed_and_document_their_arguments(package):
    problems = []
    for where, fn in _public(package):
        sig = inspect.signature(fn)
        params = [p for n, p in sig.parameters.items() if n not in ("self", "cls")]
        untyped = [p.name for p in params if p.annotation is inspect.Parameter.empty]
        if untyped or sig.return_annotation is inspect.Signature.empty:
            problems.append(
                f"{where}: untyped {untyped}{' return' if sig.return_annotation is inspect.Signature.empty else ''}"
            )
        doc = inspect.getdoc(fn)  # a method that overrides a documented one inherits its docstring
        if not doc:
            problems.append(f"{where}: no docstring")
        elif len(params) > 2 and "Args:" not in doc:
            problems.append(f"{where}: {len(params)} arguments, no Args: section")
    assert not problems, "\n".join(problems)
