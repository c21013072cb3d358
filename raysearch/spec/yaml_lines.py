"""Reading the file: YAML with every key's line recorded, so a problem names where it is."""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raysearch.spec.errors import Key, SpecError


class Loader(yaml.SafeLoader):
    """YAML 1.1 wants a dot and a signed exponent in a float, so it reads 1e-9 as a string."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."))  # ints match first: the resolvers YAML already has come before this
_MERGE = "tag:yaml.org,2002:merge"


@dataclass
class Doc:
    file: str  # as the user gave it
    data: dict[str, Any]
    lines: dict[Key, int]  # 1-based line of every key and list item
    origins: dict[Key, str] = field(default_factory=dict)  # keys set by a flag, and which

    def where(self, path: Key) -> str:
        """':<line>' or ' (from <flag>)': the deepest part of `path` that the file or a flag
        wrote (a missing key is reported at its parent)."""
        for n in range(len(path), 0, -1):
            part = path[:n]
            if part in self.origins:
                return f" (from {self.origins[part]})"
            if part in self.lines:
                return f":{self.lines[part]}"
            made = [o for key, o in self.origins.items() if key[:n] == part]
            if made:  # `--set a.b=1` created `a`
                return f" (from {made[0]})"
        return ""

    def error(self, path: Key, problem: str, line: int | None = None) -> SpecError:
        where = f":{line}" if line else self.where(path)
        key = f"{dotted(path)}: " if path else ""
        return SpecError(f"{self.file}{where}: {key}{problem}".replace("\n", " "))


def dotted(path: Key) -> str:
    """a.b.0.c; a key with a character that does not print (a tab, a line break) quoted, so the
    message stays one line and shows it."""
    return ".".join(str(k) if str(k).isprintable() else repr(k) for k in path)


def read_text(file: str) -> str:
    try:
        return Path(file).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{file}: is a directory, not a search-space file") from None
    except OSError as e:
        raise SpecError(f"{file}: cannot read it: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{file}: not a text file (not UTF-8)") from None


def parse(file: str, text: str) -> Doc:
    try:
        loader = Loader(text)  # checks every character of a str at once
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        line = text.count("\n", 0, e.position) + 1
        raise SpecError(f"{file}:{line}: invalid YAML: {str(e).splitlines()[0]}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(f"{file}: the file is empty")
        doc = Doc(file, {}, {})
        data = _build(doc, loader, node, (), frozenset())
    except yaml.MarkedYAMLError as e:
        raise SpecError(f"{file}{_yaml_problem(e)}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError(f"{file}:{node.start_mark.line + 1}: the top level must be a mapping "
                        f"(name:, model:, data:, ...), not a {type(data).__name__}")
    doc.data = data
    return doc


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    """':<line>: invalid YAML: <context (line n)>, <problem>': where it broke, and what was open
    (an unclosed bracket or quote starts lines earlier)."""
    mark = e.problem_mark or e.context_mark
    where = f":{mark.line + 1}" if mark else ""
    context = e.context or ""
    if e.context and e.context_mark and mark and e.context_mark.line != mark.line:
        context += f" (line {e.context_mark.line + 1})"
    return f"{where}: invalid YAML: " + ", ".join(x for x in (context, e.problem) if x)


def _build(doc: Doc, loader: Loader, node: yaml.Node, path: Key, stack: frozenset) -> Any:
    """The node as Python values, recording each key's line; duplicate keys are errors."""
    line = node.start_mark.line + 1
    if id(node) in stack:
        raise doc.error(path, "an alias contains itself", line)
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node)
        except ValueError as e:  # e.g. a date that does not exist
            raise doc.error(path, str(e), line) from None
    stack = stack | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            doc.lines[path + (i,)] = item.start_mark.line + 1
            items.append(_build(doc, loader, item, path + (i,), stack))
        return items
    own = [(k, v) for k, v in node.value if k.tag != _MERGE]
    loader.flatten_mapping(node)  # `<<: *anchor` entries come first; keys of the node win
    merged = node.value[: len(node.value) - len(own)]
    result: dict[Any, Any] = {}
    for i, (key_node, value_node) in enumerate(own + merged):
        key = _build(doc, loader, key_node, path, stack)
        key_line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise doc.error(path, "a key must be a plain value", key_line)
        if key in result:
            if i >= len(own):
                continue
            raise doc.error(path + (key,), f"duplicate key (first at line "
                            f"{doc.lines[path + (key,)]})", key_line)
        doc.lines[path + (key,)] = key_line
        result[key] = _build(doc, loader, value_node, path + (key,), stack)
    return result

