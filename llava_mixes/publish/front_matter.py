"""The YAML front matter of a dataset card (`README.md`), read as untrusted input.

`read_front_matter` returns the metadata mapping and the card's body, or raises `PublishError` naming the card and
the fault. It reads at most `MAX_CARD_BYTES` of UTF-8 and looks at the YAML's events before it builds anything: an
alias (`*name`, the way a few lines of YAML expand into gigabytes), nesting deeper than `MAX_DEPTH` and more than
`MAX_EVENTS` nodes are refused, so the parse is bounded in time and memory. The block is found the way
`huggingface_hub.RepoCard` finds it (`REGEX_YAML_BLOCK`); a card without one has empty metadata, as there.
"""

from __future__ import annotations

from typing import Any

import yaml
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from llava_mixes.errors import PublishError

MAX_CARD_BYTES = 32 << 20
"""A card for the viewer's 4,000 configs, each with its features and split sizes, is about 12 MB."""
MAX_DEPTH = 64
MAX_EVENTS = 5_000_000
_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def read_front_matter(data: bytes, where: str) -> tuple[dict[str, Any], str]:
    """The metadata (a mapping with string keys; empty without a YAML block) and the body of the card `data`, the
    bytes of the file `where`."""
    if len(data) > MAX_CARD_BYTES:
        raise PublishError(f"{where}: {len(data):,} bytes, over the {MAX_CARD_BYTES:,} a card may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PublishError(f"{where}: not UTF-8 (byte {error.start})") from None
    match = REGEX_YAML_BLOCK.search(text)
    if match is None:
        return {}, text
    block = match.group(2)
    try:
        _check_events(block, where)
        metadata = yaml.load(block, Loader=_LOADER)
    except yaml.YAMLError as error:
        raise PublishError(f"{where}: cannot parse the card's YAML front matter: {_one_line(error)}") from None
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(key, str) for key in metadata):
        raise PublishError(f"{where}: the YAML front matter is not a mapping of names to values")
    return metadata, text[match.end() :]


def _check_events(block: str, where: str) -> None:
    depth = 0
    for count, event in enumerate(yaml.parse(block, Loader=_LOADER)):
        if count >= MAX_EVENTS:
            raise PublishError(f"{where}: the YAML front matter has over {MAX_EVENTS:,} nodes")
        if isinstance(event, yaml.AliasEvent):
            raise PublishError(
                f"{where}: the YAML front matter uses the alias *{event.anchor}; write the value out instead "
                "(aliases are refused: a few of them can expand into gigabytes)"
            )
        if isinstance(event, _OPENING):
            depth += 1
            if depth > MAX_DEPTH:
                raise PublishError(f"{where}: the YAML front matter is nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, _CLOSING):
            depth -= 1


def _one_line(error: yaml.YAMLError) -> str:
    return " ".join(str(error).split())[:300]
