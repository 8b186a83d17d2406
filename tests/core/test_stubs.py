"""The type stubs in _native.pyi name exactly what the compiled module exports."""

import ast
import inspect
from pathlib import Path

import mlvec
from mlvec import _native

STUB = Path(mlvec.__file__).with_name("_native.pyi")


def _stub_names() -> dict[str, ast.AST]:
    tree = ast.parse(STUB.read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def test_every_export_has_a_stub_and_vice_versa():
    exported = {n for n in dir(_native) if not n.startswith("_") or n == "__version__"}
    assert exported == set(_stub_names())


def test_function_parameters_match():
    for name, node in _stub_names().items():
        if not isinstance(node, ast.FunctionDef):
            continue
        obj = getattr(_native, name)
        sig = inspect.signature(obj)
        stub_params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
        assert list(sig.parameters) == stub_params, name
        kwonly = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
        assert kwonly == [a.arg for a in node.args.kwonlyargs], name
