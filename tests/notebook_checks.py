"""Checks of a notebook's code that several test files share: it sets no method setting itself (they come from
``geodd.methods``), and its closing cell lists the geodd functions it uses (the d2l habit)."""
from __future__ import annotations

import ast
import importlib
import io
import json
import re
import tokenize
from pathlib import Path

_NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
#: settings that only geodd.methods defines: a notebook may neither pass them as keywords, assign them, nor use
#: them as dict keys (an ablation's value comes from its study module)
METHOD_SETTINGS = {"ce_weight", "lam", "k", "sigma", "lr_img", "alpha_head", "kernel", "num_freqs", "loss_scale",
                   "target_radius", "lift", "mode", "rule", "direction", "matcher", "idm", "net_generate_interval",
                   "model_train_steps", "train_batch", "initial_nets", "fetch_net_num", "net_lr", "momentum"}
#: names that may not appear in a notebook's code at all
NEVER_IN_NOTEBOOKS = {"ce_weight", "lr_img"}
LIBRARY_HEADING = "## Library functions used in this notebook"


def _cells(notebook: str) -> list[dict]:
    return json.loads((_NOTEBOOKS / f"{notebook}.ipynb").read_text())["cells"]


def _code(notebook: str) -> list[tuple[int, str]]:
    return [(i, "".join(c["source"])) for i, c in enumerate(_cells(notebook)) if c["cell_type"] == "code"]


def _literal(tok: tokenize.TokenInfo) -> str | None:
    if tok.type == tokenize.NAME:
        return tok.string
    if tok.type == tokenize.STRING:
        try:
            value = ast.literal_eval(tok.string)
        except (ValueError, SyntaxError):  # f-strings
            return None
        return value if isinstance(value, str) else None
    return None


def method_setting_literals(notebook: str) -> list[str]:
    """``cell i: name`` for every method setting a notebook's code sets: ``name=`` (keyword or assignment),
    ``"name":`` (dict key), or any mention of ``NEVER_IN_NOTEBOOKS``."""
    skip = (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)
    found = []
    for i, code in _code(notebook):
        toks = [t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type not in skip]
        for a, b in zip(toks, toks[1:] + [None]):
            name = _literal(a)
            if name is None:
                continue
            sets = b is not None and ((a.type == tokenize.NAME and b.string == "=")
                                      or (a.type == tokenize.STRING and b.string == ":"))
            if sets and name in METHOD_SETTINGS:
                found.append(f"cell {i}: {a.string}{b.string}")
        found += [f"cell {i}: {m}" for m in re.findall(r"\b(?:%s)\b" % "|".join(NEVER_IN_NOTEBOOKS), code)]
    return found


def _geodd_names(notebook: str) -> set[str]:
    """The geodd functions and classes a notebook's code calls or names (``geodd.module.name``)."""
    modules, objects = {}, {}
    code = "\n".join(c for _, c in _code(notebook))
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "geodd":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                try:
                    importlib.import_module(full)
                    modules[alias.asname or alias.name] = full
                except ImportError:
                    objects[alias.asname or alias.name] = full
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            full = f"{modules[node.value.id]}.{node.attr}"
            if callable(getattr(importlib.import_module(modules[node.value.id]), node.attr)):
                used.add(full)
        elif isinstance(node, ast.Name) and node.id in objects:
            used.add(objects[node.id])
    return used


def library_cell_problems(notebook: str) -> list[str]:
    """What is wrong with a notebook's closing "Library functions used" cell: missing, not last, a geodd function
    or class the code uses but the cell does not list, or a listed name that does not exist."""
    last = _cells(notebook)[-1]
    text = "".join(last["source"])
    if last["cell_type"] != "markdown" or not text.startswith(LIBRARY_HEADING):
        return [f"the last cell does not start with {LIBRARY_HEADING!r}"]
    listed = set(re.findall(r"`(geodd(?:\.\w+)+)`", text))
    problems = [f"not listed: {n}" for n in sorted(_geodd_names(notebook) - listed)]
    for name in sorted(listed):
        module, _, attr = name.rpartition(".")
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            problems.append(f"listed but not in geodd: {name}")
    return problems


#: a literal value in code: a number, a string, True/False/None, or the start of a tuple or list
LITERAL = r"""(?:-?[0-9.]+|["'][^"']*["']|True|False|None|\(|\[)"""


def notebook_code(notebook: str) -> str:
    """A notebook's code cells joined."""
    return "\n".join(code for _, code in _code(notebook))


def literal_settings(code: str, keys) -> list[str]:
    """The ``keys`` that ``code`` sets to a literal value: ``key=1``, ``"key": "x"``, ``key = (..``."""
    pattern = re.compile(r"""["']?\b(""" + "|".join(map(re.escape, sorted(keys))) + r""")\b["']?\s*[=:]\s*""" + LITERAL)
    return pattern.findall(code)
