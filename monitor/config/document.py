"""YAML read into plain data that remembers where every key and value stood, with ``${VAR}`` filled in.

PyYAML's composer gives nodes with marks; we build the data ourselves from those nodes so that every
later error (a wrong type found by pydantic, an unknown metric found by a check kind) can be reported
at the line and column of the text that caused it. Duplicate keys, which YAML loaders silently
collapse, are reported here too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from monitor.config.errors import ConfigIssue, dotted

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Document:
    """One YAML file as data, with the position of each value (and of each mapping key)."""

    file: str
    data: Any = None
    values: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    keys: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)

    def position(self, path: tuple, *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` stands; falls back to the nearest enclosing value that exists."""
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.values:
                return self.values[path]
        return (1, 1)

    def issue(self, path: tuple, message: str, *, key: bool = False) -> ConfigIssue:
        line, col = self.position(path, key=key)
        return ConfigIssue(self.file, line, col, dotted(path), message)


def read_document(file: str, text: str, environ: Mapping[str, str] | None = None) -> Document:
    """Parse ``text``; problems land in ``Document.issues`` rather than raising, so all are reported."""
    doc = Document(file=file)
    env = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "cannot parse"
        if "'\\t'" in problem:
            problem = "a tab cannot indent YAML: use spaces"
        elif problem.startswith("mapping values are not allowed"):
            problem = "unexpected ':' (is this line indented too far, or does a value with ': ' need quotes?)"
        context = f" {exc.context}" if exc.context else ""
        doc.issues.append(ConfigIssue(file, line, col, "", f"YAML syntax error: {problem}{context}"))
        return doc
    if node is None:
        doc.data = {}
        return doc
    doc.data = _build(node, (), doc, env, SafeConstructor())
    return doc


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: yaml.Node, path: tuple, doc: Document, env: Mapping[str, str], constructor: SafeConstructor) -> Any:
    doc.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node)
            if not isinstance(key, (str, int, float, bool)):
                doc.issues.append(doc.issue(path, "a mapping key must be a plain word"))
                continue
            child = path + (key,)
            if key in out:
                first_line = doc.keys[child][0]
                doc.keys[child] = _mark(key_node)
                doc.issues.append(doc.issue(child, f"duplicate key {key!r} (first written at line {first_line})", key=True))
                continue
            doc.keys[child] = _mark(key_node)
            out[key] = _build(value_node, child, doc, env, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), doc, env, constructor) for i, item in enumerate(node.value)]
    value = constructor.construct_object(node)
    if isinstance(value, str) and "$" in value:
        value = _interpolate(value, path, doc, env)
    return value


def _interpolate(text: str, path: tuple, doc: Document, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] or default is None):  # as in the shell: ':-' also replaces an empty value
            return env[name]
        if default is not None:
            return default
        doc.issues.append(
            doc.issue(path, f"environment variable {name} is not set and has no default: set it, or write ${{{name}:-default}}")
        )
        return ""

    return _VARIABLE.sub(substitute, text)
