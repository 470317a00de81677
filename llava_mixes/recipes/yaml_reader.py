"""The YAML reader of recipe files: a recipe file is untrusted input, read with bounds (at most `MAX_RECIPE_BYTES`,
UTF-8, plain YAML: no anchors, aliases, merge keys, duplicate keys or explicit tags beyond the core scalars, at most
`MAX_DEPTH` levels deep), and every error shows a bad value cut short (`show`)."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

from llava_mixes.errors import ConfigError

MAX_RECIPE_BYTES = 64 << 10
"""Largest recipe file read; real recipes take a few hundred bytes."""
MAX_DEPTH = 32
"""Deepest nesting of YAML collections in a recipe; a real one nests 3 deep."""
_CORE_TAGS = frozenset(f"tag:yaml.org,2002:{kind}" for kind in ("str", "int", "float", "bool", "null", "seq", "map"))
_MERGE_TAG = "tag:yaml.org,2002:merge"

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple, _repr.maxset = 2, 4, 4, 4, 4
_repr.maxstring, _repr.maxother, _repr.maxlong = 80, 80, 40


def show(value: object) -> str:
    """`repr(value)`, cut short: an error message never grows with the input."""
    return _repr.repr(value)


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what lets a small file grow into a huge structure or name a Python type:
    anchors and aliases, merge keys, explicit tags other than the core scalar and collection tags, duplicate
    keys, and collections nested deeper than `MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _refused("an alias (*name); write the value out", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _refused("an anchor (&name); write the value out", event.start_mark)
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!" and tag not in _CORE_TAGS:
            raise _refused(
                f"the tag {show(tag)}; a recipe holds plain strings, numbers, lists and maps", event.start_mark
            )
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        self._depth += nested
        if self._depth > MAX_DEPTH:
            raise _refused(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= nested

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                raise _refused("a merge key (<<); write the keys out", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise _refused(f"a key that is not a plain value ({show(key)})", key_node.start_mark) from None
            if duplicate:
                raise _refused(f"the key {show(key)} twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _refused(what: str, mark: yaml.Mark | None) -> yaml.YAMLError:
    return yaml.constructor.ConstructorError(None, None, f"a recipe may not hold {what}", mark)


def read_recipe_yaml(text: str, where: str) -> object:
    """The YAML document of a recipe (see `RecipeLoader`); `ConfigError` naming `where` and the position."""
    loader = None
    try:
        loader = RecipeLoader(text)
        loader.name = where
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(f"recipe {where!r} is not a plain YAML recipe: {str(error)[:600]}") from None
    except (ValueError, OverflowError) as error:  # a number or date PyYAML resolves but cannot build
        raise ConfigError(f"recipe {where!r} holds a value that cannot be read: {str(error)[:300]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_recipe_file(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise ConfigError(f"recipe {str(path)!r} is larger than {MAX_RECIPE_BYTES:,} bytes; a recipe is a short file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"recipe {str(path)!r} is not UTF-8 text: byte {error.start} (0x{data[error.start]:02x}) cannot be "
            "decoded; save the file as UTF-8"
        ) from None
