"""The checkers behind test_structure.py's rules on functions, Redis keys and module state.

Each takes one parsed module and the path it is reported under, and returns what breaks
the rule, one "path:line what" string a finding, so test_structure.py can run it on every
module and, to show it can fail, on a snippet of bad source.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

MAX_FUNCTION_LINES = 60
KEY_MARK = "voicemail:"
MESSAGE_MARK = "voicemail: "  # `voicemail: error: ...`: a line for a person, not a key
CONTAINERS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
CONTAINER_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "deque"}
MUTATORS = {
    *("append", "appendleft", "extend", "extendleft", "insert", "add", "update"),
    *("setdefault", "pop", "popleft", "popitem", "remove", "discard", "clear"),
}


def _name(node: ast.AST | None) -> str:
    """`x` for `x` and for `a.b.x`; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def function_lengths(tree: ast.Module, where: str) -> list[tuple[int, str]]:
    """(lines from the `def` line to the last line of the body, "where:line name") for
    every function and method, nested ones too."""
    return [
        ((node.end_lineno or node.lineno) - node.lineno + 1, f"{where}:{node.lineno} {node.name}")
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (they describe keys, not build them)."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.body and isinstance(first := node.body[0], ast.Expr):
            found.add(id(first.value))
    return found


def key_literals(tree: ast.Module, where: str) -> list[str]:
    """Redis keys written out: a string (f-string parts included) holding `voicemail:`
    other than a message starting `voicemail: `, an f-string whose first formatted value is
    a name ending in PREFIX, and a `+` with such a name on its left."""
    docstrings, found = _docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            hit = KEY_MARK in text and not text.startswith(MESSAGE_MARK)
            hit = hit and id(node) not in docstrings
        elif isinstance(node, ast.JoinedStr):
            first = next((v for v in node.values if isinstance(v, ast.FormattedValue)), None)
            hit = first is not None and _name(first.value).endswith("PREFIX")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            hit = _name(node.left).endswith("PREFIX")
        else:
            continue
        if hit:
            found.append(f"{where}:{node.lineno} {ast.unparse(node)}")
    return found


def mutated_names(tree: ast.Module) -> set[str]:
    """Names `tree` changes in place (`x` of `x` or of `mod.x`): `x.append(...)` and the
    other MUTATORS, `x[k] = ...`, `x[k] += ...`, `del x[k]` and `x += ...`."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATORS:
                found.add(_name(node.func.value))
        elif isinstance(node, ast.Assign | ast.Delete):
            found.update(_name(t.value) for t in node.targets if isinstance(t, ast.Subscript))
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            target = node.target
            if isinstance(target, ast.Subscript):
                found.add(_name(target.value))
            elif isinstance(node, ast.AugAssign):
                found.add(_name(target))
    return found - {""}


def _module_level(statements: list[ast.stmt]) -> Iterator[ast.AST]:
    """The module's statements and those of its if/try/with/for blocks, not of its
    functions or classes."""
    for node in statements:
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _module_level(getattr(node, field, []))


def module_state(tree: ast.Module, where: str, mutated: set[str]) -> list[str]:
    """Module-level names bound to a container (a dict/list/set display or comprehension,
    or a dict()/list()/set()/defaultdict()/OrderedDict()/deque() call), unless a dunder or
    an UPPER_CASE constant no module changes (`mutated`); and every `global` statement."""
    found = []
    for node in _module_level(tree.body):
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        value = node.value
        call = isinstance(value, ast.Call) and _name(value.func) in CONTAINER_CALLS
        if not (call or isinstance(value, CONTAINERS)):
            continue
        for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
            name = _name(target)
            constant = name.lstrip("_").isupper() and name not in mutated
            if not (name.startswith("__") or constant):
                found.append(f"{where}:{node.lineno} {name} = {ast.unparse(value)[:40]}")
    found += [
        f"{where}:{node.lineno} global {', '.join(node.names)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Global)
    ]
    return found
