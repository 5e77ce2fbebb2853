"""Read a YAML file a user hands us (stack file, inventory) with bounds, before any parsing.

PyYAML's ``SafeLoader`` is the loader: it is already a dependency (maintained, the parser
Pulumi's own Python SDK uses), builds only plain types, and its composer is plain Python, so
the checks below hook into it instead of re-implementing YAML. ruamel.yaml refuses duplicate
keys by default but has no bound on alias expansion either, so it would need the same hooks
plus a second YAML parser in the dependency tree; strictyaml refuses anchors and flow style
entirely, which Pulumi stack files written by ``pulumi config set`` may use.

What is refused, each as a ``UserError`` (exit 2) naming the file:

- a file over ``MAX_FILE_BYTES`` (stack files and inventories are a few kB);
- bytes that are not UTF-8 (a UTF-8 byte-order mark is allowed, as YAML allows it);
- nesting deeper than ``MAX_DEPTH`` (20,000 brackets would otherwise hit Python's recursion
  limit inside the composer);
- more than ``MAX_EXPANDED_NODES`` nodes once every alias is expanded (an alias bomb is a few
  hundred bytes that expand to billions of nodes when validated or printed) and recursive
  aliases;
- a key given twice in one mapping (``protect: true`` then ``protect: false`` would otherwise
  silently keep the last one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsinfra.errors import UserError

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_EXPANDED_NODES = 20_000


def load_yaml_file(path: Path, *, what: str) -> Any:
    """The document in ``path`` as plain Python data, or a ``UserError`` saying what is wrong."""
    text = _read_text(Path(path), what)
    return load_yaml_text(text, source=f"{what} {path}")


def load_yaml_text(text: str, *, source: str) -> Any:
    import yaml  # deferred: keeps `dsinfra --help` light

    loader = None
    try:
        loader = _bounded_loader_class()(text)  # the reader already refuses control characters
        return loader.get_single_data()
    except _YamlLimit as exc:
        raise UserError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{source}: not valid YAML{where}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path, what: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UserError(f"{what} {path}: {size:,} bytes; allowed: at most "
                            f"{MAX_FILE_BYTES:,} bytes")
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path}: is a directory, not a file") from None
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:  # grew while we read it, or a pipe/device
        raise UserError(f"{what} {path}: larger than {MAX_FILE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                        f"{exc.start}); allowed: a UTF-8 YAML file") from None
    return text.removeprefix("\ufeff")


class _YamlLimit(Exception):
    """A bound of this module was reached; the message says which."""


_LOADER_CLASS: type | None = None


def _bounded_loader_class() -> type:
    global _LOADER_CLASS
    if _LOADER_CLASS is None:
        _LOADER_CLASS = _make_loader_class()
    return _LOADER_CLASS


def _make_loader_class() -> type:
    import yaml
    from yaml.events import AliasEvent
    from yaml.nodes import MappingNode

    class BoundedSafeLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._depth = 0
            self._expanded_nodes = 0
            self._subtree_nodes: dict[int, int] = {}

        def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
            if self.check_event(AliasEvent):
                anchor = self.peek_event().anchor
                node = self.anchors.get(anchor)
                if node is not None:
                    if id(node) not in self._subtree_nodes:
                        raise _YamlLimit(f"alias *{anchor} refers to a node that contains it; "
                                         "allowed: aliases to finished nodes only")
                    self._count(self._subtree_nodes[id(node)])
                return super().compose_node(parent, index)
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _YamlLimit(f"nested deeper than {MAX_DEPTH} levels; allowed: at most "
                                 f"{MAX_DEPTH}")
            before = self._expanded_nodes
            self._count(1)
            node = super().compose_node(parent, index)
            self._depth -= 1
            self._subtree_nodes[id(node)] = self._expanded_nodes - before
            return node

        def _count(self, nodes: int) -> None:
            self._expanded_nodes += nodes
            if self._expanded_nodes > MAX_EXPANDED_NODES:
                raise _YamlLimit(f"more than {MAX_EXPANDED_NODES:,} values once aliases are "
                                 "expanded (an alias bomb?); allowed: at most "
                                 f"{MAX_EXPANDED_NODES:,}")

        def construct_mapping(self, node, deep=False):  # noqa: ANN001
            if isinstance(node, MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                    except TypeError:  # an unhashable key; PyYAML reports it below
                        continue
                    if duplicate:
                        mark = key_node.start_mark
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {key!r} appears twice in one mapping (line "
                            f"{seen[key].line + 1} and line {mark.line + 1}); allowed: each key "
                            "once", mark)
                    seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    return BoundedSafeLoader
