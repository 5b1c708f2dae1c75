"""YAML read into plain data that remembers where every key and value stood, with ``${VAR}`` filled in.

PyYAML's composer gives nodes with marks; we build the data ourselves from those nodes so that every
later error (a wrong type found by pydantic, an unknown metric found by a check kind) can be reported
at the line and column of the text that caused it. Duplicate keys, which YAML loaders silently
collapse, are reported here too.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml
    _CParser = None

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
    # What works but is likely not what the author wants (a drift check over a small reference): said
    # by `monitor validate` and logged at the daemon's start, without refusing the file.
    warnings: list[ConfigIssue] = field(default_factory=list)

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


MAX_BYTES = 1024 * 1024
"""A larger file is refused before it is parsed (a check file is a few kilobytes)."""
MAX_DEPTH = 100
"""Mappings and lists nested deeper than this are refused, also when aliases nest them."""
MAX_NODES = 20_000
"""Nodes (keys, scalars, mappings and lists) one file may hold, also once its aliases are expanded."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_COLLECTIONS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _LimitExceeded(Exception):
    """A file over one of the limits above; reading stops at once."""

    def __init__(self, position: tuple[int, int], message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


class _Alias(yaml.Node):
    """An alias (``*name``) as written: where it stands, and the anchored node it refers to."""

    def __init__(self, name: str, target: yaml.Node, start_mark: Any, end_mark: Any) -> None:
        super().__init__(target.tag, target, start_mark, end_mark)
        self.name = name
        self.target = target


class _Composing(Composer):
    """PyYAML's composer under the depth and size limits, keeping where each alias stands."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _LimitExceeded(_mark_of(event.start_mark), f"more than {MAX_NODES:,} nodes in one file")
        if self.check_event(yaml.AliasEvent):
            return _Alias(event.anchor, super().compose_node(parent, index), event.start_mark, event.end_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitExceeded(_mark_of(event.start_mark), f"nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Loader(_Composing, yaml.SafeLoader):
    """The pure-Python loader: its syntax errors are the ones our messages are written for."""


if _CParser is not None:

    class _FastLoader(_Composing, _CParser, SafeConstructor, Resolver):
        """libyaml's parser (some 20 times faster) under our composer."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


_SLOW_PARSE_LIMIT = 128 * 1024
"""A file with a syntax error up to this size is parsed again by the pure-Python loader for its message."""


def _compose(text: str) -> yaml.Node | None:
    """The file's node; raises _LimitExceeded or yaml.YAMLError. Bounded: libyaml, and PyYAML's own parser only
    on a small file that libyaml found broken."""
    if _CParser is not None:
        fast = _FastLoader(text)
        try:
            return fast.get_single_node()
        except yaml.YAMLError:
            if len(text) > _SLOW_PARSE_LIMIT:
                raise
        finally:
            fast.dispose()
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def read_document(file: str, text: str, environ: Mapping[str, str] | None = None) -> Document:
    """Parse ``text``; problems land in ``Document.issues`` rather than raising, so all are reported."""
    doc = Document(file=file)
    env = os.environ if environ is None else environ
    if len(text) > MAX_BYTES:
        doc.issues.append(ConfigIssue(file, 1, 1, "", f"file is larger than {MAX_BYTES // 1024} KiB"))
        return doc
    if not _printable(text, doc):
        return doc
    try:
        node = _compose(text)
    except _LimitExceeded as exc:
        doc.issues.append(ConfigIssue(file, *exc.position, "", f"{exc.message}: see Limits in docs/configuration.md"))
        return doc
    except yaml.MarkedYAMLError as exc:
        doc.issues.append(_syntax_issue(file, text, exc))
        return doc
    except yaml.YAMLError as exc:
        doc.issues.append(ConfigIssue(file, 1, 1, "", f"YAML syntax error: {exc}"))
        return doc
    if node is None:
        doc.data = {}
        return doc
    builder = _Builder(doc, env)
    try:
        doc.data = builder.build(node, ())
    except _LimitExceeded as exc:
        doc.data = None
        doc.issues.append(ConfigIssue(file, *exc.position, "", f"{exc.message}: see Limits in docs/configuration.md"))
    return doc


def _printable(text: str, doc: Document) -> bool:
    """Whether ``text`` has only characters YAML allows; else an issue at the first other one."""
    match = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if match is None:
        return True
    char = match.group()
    line = text.count("\n", 0, match.start()) + 1
    col = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
    name = "a NUL byte" if char == "\0" else f"the control character {char!r}"
    doc.issues.append(ConfigIssue(doc.file, line, col, "", f"{name} (U+{ord(char):04X}) cannot appear in a YAML file"))
    return False


def _syntax_issue(file: str, text: str, exc: yaml.MarkedYAMLError) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "cannot parse"
    reworded = _reworded(text, exc)
    if reworded is not None:
        (at_line, at_col), message = reworded
        return ConfigIssue(file, at_line, at_col, "", f"YAML syntax error: {message}")
    opened = exc.context_mark
    if exc.context in _FLOW_CONTEXTS and opened is not None and mark is not None and mark.line > opened.line:
        # The parser notices an unclosed bracket only where the next key starts: point at the bracket.
        bracket = "[" if "sequence" in exc.context else "{"
        return ConfigIssue(
            file,
            opened.line + 1,
            opened.column + 1,
            "",
            f"YAML syntax error: this '{bracket}' is never closed (reported where it opens; "
            f"the parser stopped at line {line}, column {col}: {problem})",
        )
    context = f" {exc.context}" if exc.context else ""
    return ConfigIssue(file, line, col, "", f"YAML syntax error: {problem}{context}")


def _reworded(text: str, exc: yaml.MarkedYAMLError) -> tuple[tuple[int, int], str] | None:
    """Where and what for the common mistakes, said as what to change instead of in PyYAML's words
    (whose context, "while scanning ...", would no longer read as part of the sentence)."""
    problem, mark, opened = exc.problem or "", exc.problem_mark, exc.context_mark
    if mark is None:
        return None
    if "'\\t'" in problem:
        return _mark_of(mark), "a tab cannot indent YAML: use spaces"
    if problem.startswith("mapping values are not allowed"):
        return _mark_of(mark), "unexpected ':' (is this line indented too far, or does a value with ': ' need quotes?)"
    if problem.startswith("expected <block end>"):
        if text.split("\n")[mark.line][: mark.column].strip():  # after a value on its line: `a: "x" y`
            return _mark_of(mark), "more text after the value: quote the whole value, or start a new line"
        return _mark_of(mark), "this line is indented unlike the lines above it: line it up with them"
    if problem == "could not find expected ':'" and opened is not None:
        # The scanner notices on the next line; the key written without ': ' is where it started.
        return _mark_of(opened), "expected 'key: value' here: put a space after the ':' (kind: drift, not kind:drift)"
    if exc.context == "while scanning a quoted scalar" and problem.endswith("end of stream") and opened is not None:
        # Noticed at the end of the file, where the scanner gave up looking for the closing quote.
        quote = text.split("\n")[opened.line][opened.column : opened.column + 1]
        return _mark_of(opened), f"this {quote} is never closed: end the value with {quote} too"
    if problem.startswith("found unknown escape character"):  # a Windows path or a regex in "..."
        char = problem.rpartition(" ")[2].strip("'")
        backslash = (mark.line + 1, mark.column)  # the mark is at the letter after it
        return backslash, f'\\{char} is no escape in a "..." value: write \\\\{char}, or quote the value with \' instead'
    if problem.startswith(("expected ',' or '}'", "expected ',' or ']'")) and opened is not None and mark.line == opened.line:
        # On the line the bracket opens: two items run together (`{kind: files path: x}`).
        return _mark_of(mark), f"{problem.partition(', but')[0]} here: is a ',' missing between two items?"
    if problem.startswith("found undefined alias"):
        name = problem.partition("alias ")[2].strip("'")
        return _mark_of(mark), f"alias *{name} names no anchor: write &{name} on a value above it"
    return None


_FLOW_CONTEXTS = ("while parsing a flow sequence", "while parsing a flow mapping")


def _mark(node: yaml.Node) -> tuple[int, int]:
    return _mark_of(node.start_mark)


def _mark_of(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    """Plain data from composed nodes: aliases expanded under MAX_NODES and MAX_DEPTH, a recursive one refused,
    and merge keys (``<<: *defaults``) merged with the mapping's own keys winning."""

    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.constructor = SafeConstructor()
        self.nodes = 0
        self.open: set[int] = set()  # the mappings and lists being built: one met again is a recursive alias
        self.aliases: list[_Alias] = []  # the aliases being expanded, outermost first

    def count(self, node: yaml.Node) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            where = self.aliases[0] if self.aliases else node
            raise _LimitExceeded(_mark(where), f"the file's aliases expand to more than {MAX_NODES:,} nodes")

    def build(self, node: yaml.Node, path: tuple) -> Any:
        doc = self.doc
        doc.values[path] = _mark(node)
        if isinstance(node, _Alias):
            target = node.target
            if id(target) in self.open:
                doc.issues.append(doc.issue(path, f"alias *{node.name} refers to a value that contains it"))
                return None
            self.aliases.append(node)
            try:
                value = self.build(target, path)
            finally:
                self.aliases.pop()
            doc.values[path] = _mark(node)
            return value
        self.count(node)
        if len(path) > MAX_DEPTH:
            where = self.aliases[0] if self.aliases else node
            raise _LimitExceeded(_mark(where), f"nested more than {MAX_DEPTH} levels deep once aliases are expanded")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_COLLECTIONS:
            # `!!set {a}`, `!!python/object:x {}`, `!!omap [...]`: not a mapping or a list as written
            doc.issues.append(doc.issue(path, f"cannot read this value: {_tag_refused(node)}"))
            return None
        if isinstance(node, yaml.MappingNode):
            self.open.add(id(node))
            try:
                return self.mapping(node, path)
            finally:
                self.open.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self.open.add(id(node))
            try:
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        if node.tag == _MERGE_TAG:  # '<<' written as a value, not as a key
            return node.value
        try:
            value = self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            doc.issues.append(doc.issue(path, f"cannot read this value: {_unreadable(node, exc)}"))
            return None
        if isinstance(value, str) and "$" in value:
            value = _interpolate(value, path, doc, self.env)
        return value

    def key(self, node: yaml.Node) -> Any:
        """A mapping key's value, or None when it is not a plain word (reported by the caller)."""
        while isinstance(node, _Alias):
            node = node.target
        if not isinstance(node, yaml.ScalarNode):
            return None
        try:
            key = self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            return None
        return key if isinstance(key, (str, int, float, bool)) else None

    def mapping(self, node: yaml.MappingNode, path: tuple) -> dict[Any, Any]:
        doc = self.doc
        out: dict[Any, Any] = {}
        merges: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if _unalias(key_node).tag == _MERGE_TAG:
                merges.append((key_node, value_node))
                continue
            self.count(key_node)
            key = self.key(key_node)
            if key is None:
                doc.issues.append(doc.issue(path, "a mapping key must be a plain word"))
                continue
            child = path + (key,)
            if key in out:
                first_line = doc.keys[child][0]
                doc.keys[child] = _mark(key_node)
                doc.issues.append(doc.issue(child, f"duplicate key {key!r} (first written at line {first_line})", key=True))
                continue
            doc.keys[child] = _mark(key_node)
            out[key] = self.build(value_node, child)
        for _, value_node in merges:
            for key, merged_key, merged_value in self.merged(value_node, path, set()):
                if key not in out:  # the mapping's own keys win, then earlier merges over later ones
                    doc.keys[path + (key,)] = _mark(merged_key)
                    out[key] = self.build(merged_value, path + (key,))
        return out

    def merged(self, node: yaml.Node, path: tuple, seen: set[int]) -> list[tuple[Any, yaml.Node, yaml.Node]]:
        """The (key, key node, value node) pairs a merge key's value brings: a mapping, or a list of mappings."""
        doc = self.doc
        target = _unalias(node)
        sources = [_unalias(item) for item in target.value] if isinstance(target, yaml.SequenceNode) else [target]
        pairs: list[tuple[Any, yaml.Node, yaml.Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                doc.issues.append(doc.issue(path, "'<<' merges a mapping (<<: *name) or a list of them (<<: [*a, *b])"))
                continue
            if id(source) in seen or id(source) in self.open:
                doc.issues.append(doc.issue(path, "'<<' merges a mapping that contains this one"))
                continue
            own: list[tuple[Any, yaml.Node, yaml.Node]] = []
            inner: list[yaml.Node] = []
            for key_node, value_node in source.value:
                self.count(key_node)
                if _unalias(key_node).tag == _MERGE_TAG:
                    inner.append(value_node)
                    continue
                key = self.key(key_node)
                if key is not None:
                    own.append((key, key_node, value_node))
            pairs.extend(own)
            for value_node in inner:
                pairs.extend(self.merged(value_node, path, seen | {id(source)}))
        return pairs


def _tag_refused(node: yaml.Node) -> str:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return f"the tag {tag} is not read here: write a plain value (a secret as ${{VAR}})"


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    """Why a scalar cannot be constructed, said for the person who wrote it."""
    problem = getattr(exc, "problem", None) or str(exc)
    if problem.startswith("could not determine a constructor"):  # !secret, !!python/name:..., !include
        return _tag_refused(node)
    if "integer string conversion" in problem:  # Python's guard against quadratic parsing
        return f"a number of more than {sys.get_int_max_str_digits()} digits: quote it if it is text"
    return problem


def _unalias(node: yaml.Node) -> yaml.Node:
    while isinstance(node, _Alias):
        node = node.target
    return node


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
