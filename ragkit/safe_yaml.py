"""Reading YAML that a user (or someone who sent them a file) wrote: safe, bounded, strict.

PyYAML's ``safe_load`` never builds Python objects, but it still lets through what makes a bad
experiment file hang, crash or silently mean something else:

- **duplicate keys** (the last one wins): a second ``dataset:`` switches the dataset, ``k: 2`` after
  ``k: [1, 3, 5]`` drops the sweep. Rejected with both line numbers.
- **alias bombs** ("billion laughs"): a 1 KB file whose anchors expand to billions of values. The
  composed node graph is measured with aliases expanded (memoised, so measuring is linear in the
  file) and refused above :data:`MAX_VALUES` before anything is constructed or validated.
  Recursive aliases (``&a [*a]``) are refused too.
- **deep nesting**: PyYAML composes recursively, so ``[[[[...]]]]`` 3000 levels deep is a
  RecursionError; nesting is capped at :data:`MAX_DEPTH` while composing.
- **size**: files over :data:`MAX_BYTES` are refused unread (an experiment file is a few KB).
- **non-UTF-8 bytes**, **non-text mapping keys** (``on:`` is the boolean true in YAML 1.1) and
  dates (``2024-01-01`` stays text here: no ragkit field is a date).

Every problem is a :class:`YamlProblem` with a one-line message and, where known, the line.
"""

from __future__ import annotations

from typing import Any, ClassVar

import yaml

MAX_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 64  # nesting levels of lists and mappings
MAX_VALUES = 100_000  # scalars, lists and mappings once every alias is expanded

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(ValueError):
    """Text that is not an acceptable YAML document; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class _Loader(yaml.SafeLoader):
    """SafeLoader with a nesting cap, duplicate-key and key-type checks, and no timestamps."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue  # `<<: *base` merges on purpose; later keys override it
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise YamlProblem("a mapping key must be text, not a list or mapping", line)
                key = self.construct_object(key_node)
                if not isinstance(key, str):
                    kind = "null" if key is None else f"{type(key).__name__} {key!r}"
                    raise YamlProblem(
                        f"a mapping key must be text; {key_node.value!r} reads as {kind}"
                        f" (quote it: '{key_node.value}')",
                        line,
                    )
                if key in first_line:
                    raise YamlProblem(
                        f"duplicate key {key!r} (first on line {first_line[key]}, again on line {line});"
                        " YAML would silently keep only the last one",
                        line,
                    )
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Any) -> int:
    """Values in the document with every alias expanded; memoised on node identity, so an alias
    bomb is measured in time linear in the file. Iterative: depth is already capped, but an
    explicit stack also finds recursive aliases without recursion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        children = (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        )
        if children_done:
            on_path.discard(key)
            sizes[key] = min(MAX_VALUES + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in on_path:
            raise YamlProblem(
                "an alias refers to the list or mapping that contains it", node.start_mark.line + 1
            )
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise YamlProblem(
                    "an alias refers to the list or mapping that contains it", child.start_mark.line + 1
                )
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _one_line(exc: yaml.YAMLError) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"{context}, {problem}" if context and problem else problem
    return YamlProblem(" ".join(str(text).split()), mark.line + 1 if mark is not None else None)


def loads(text: str | bytes) -> Any:
    """One YAML document from ``text`` (bytes must be UTF-8), checked as described above."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise YamlProblem(f"{len(text):,} bytes; an experiment or catalog file is at most {MAX_BYTES:,}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = text[: exc.start].count(b"\n") + 1
            raise YamlProblem(
                f"not UTF-8 text (byte 0x{text[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
                line,
            ) from None
    elif len(text) > MAX_BYTES:
        raise YamlProblem(f"{len(text):,} characters; a YAML value here is at most {MAX_BYTES:,}")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size > MAX_VALUES:
            raise YamlProblem(
                f"expands to more than {MAX_VALUES:,} values (anchors and aliases multiply what they"
                " repeat); an experiment file needs far fewer"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _one_line(exc) from None
    except RecursionError:  # belt and braces: the depth cap should make this unreachable
        raise YamlProblem(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()
