"""The type stubs in mlvec/_native/*.pyi name exactly what the compiled module and each of its
submodules export, with the same parameters, and the stub folder does not hide the extension."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import mlvec
from mlvec import _native

STUBS = Path(mlvec.__file__).with_name("_native")
SUBMODULES = ["maxsim", "contrastive", "cuda", "index"]
# (stub file, module it describes): the top level, then every submodule.
MODULES = [("__init__", "mlvec._native"), *((name, f"mlvec._native.{name}") for name in SUBMODULES)]
EACH_MODULE = pytest.mark.parametrize("stub,module", MODULES, ids=[m for _, m in MODULES])


def _stub_names(stub: str) -> dict[str, ast.AST]:
    tree = ast.parse((STUBS / f"{stub}.pyi").read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.ImportFrom) and node.level == 1:  # `from . import cuda as cuda`
            for alias in node.names:
                names[alias.asname or alias.name] = node
    return names


def _params(node: ast.FunctionDef) -> tuple[list[str], list[str]]:
    """(all parameter names, keyword-only names) of a stub function."""
    args = node.args
    return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs], [a.arg for a in args.kwonlyargs]


def _assert_same_parameters(obj, node: ast.FunctionDef, name: str, drop_self: bool = False) -> None:
    sig = inspect.signature(obj)
    stub_params, stub_kwonly = _params(node)
    if drop_self:
        stub_params = stub_params[1:]
    assert list(sig.parameters) == stub_params, name
    kwonly = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert kwonly == stub_kwonly, name


@EACH_MODULE
def test_every_export_has_a_stub_and_vice_versa(stub, module):
    mod = importlib.import_module(module)
    exported = {n for n in dir(mod) if not n.startswith("_") or n == "__version__"}
    assert exported == set(_stub_names(stub))


@EACH_MODULE
def test_function_parameters_match(stub, module):
    mod = importlib.import_module(module)
    for name, node in _stub_names(stub).items():
        if not isinstance(node, ast.FunctionDef):
            continue
        _assert_same_parameters(getattr(mod, name), node, f"{module}.{name}")


@EACH_MODULE
def test_method_parameters_match(stub, module):
    mod = importlib.import_module(module)
    for cls_name, cls_node in _stub_names(stub).items():
        if not isinstance(cls_node, ast.ClassDef) or issubclass(getattr(mod, cls_name), BaseException):
            continue
        cls = getattr(mod, cls_name)
        for node in cls_node.body:
            if not isinstance(node, ast.FunctionDef) or node.decorator_list and not _is_staticmethod(node):
                continue  # properties: no signature to compare
            if node.name == "__init__":
                _assert_same_parameters(cls, node, f"{cls_name}()", drop_self=True)
            elif node.name != "__len__":
                # Unbound methods list `self` as the stubs do.
                _assert_same_parameters(getattr(cls, node.name), node, f"{cls_name}.{node.name}")


def _is_staticmethod(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)


def test_submodules_import_both_ways():
    for name in SUBMODULES:
        mod = importlib.import_module(f"mlvec._native.{name}")
        assert mod is getattr(_native, name)
        assert mod.__name__ == f"mlvec._native.{name}"
    from mlvec._native import cuda

    assert cuda is _native.cuda


def test_the_stub_folder_does_not_hide_the_extension():
    # Only .pyi files live in mlvec/_native/: the import system still loads the compiled module.
    assert {p.suffix for p in STUBS.iterdir() if p.is_file()} == {".pyi"}
    assert Path(_native.__file__).parent == STUBS.parent
    assert Path(_native.__file__).name.startswith("_native.")
    assert not hasattr(_native, "__path__") or _native.__file__.endswith((".so", ".pyd"))
