"""opencsg's llava-instruct-zh-600k (opencsg/llava-instruct-zh-600k, also on ModelScope): Chinese visual
instructions generated with Qwen2.5-VL-32B-Instruct in the style of LLaVA-Instruct-150K.

Confirmed by its card: 641,868 rows of three tasks, 日常对话 (daily conversation, usually 5 rounds),
复杂推理 (complex reasoning, 1 round) and 描述图片 (image description, 1 round); each row has its own image,
crawled from Chinese websites; the generator was asked for `用户:…\\n\\n助手:…` and `问题:…\\n\\n回答:…` text.

Assumed, because the files could not be inspected (every variant below is read):
- files: every `.parquet`, `.jsonl` and `.json` file under `data_dir/llava-instruct-zh-600k/` (what
  `hf download opencsg/llava-instruct-zh-600k --repo-type dataset --local-dir …` writes), in path order,
  except metadata such as `dataset_info.json`;
- image: `image`, or a one-element `images` list, holding a path (relative to that folder, else to
  `data_dir`), bytes, or `{"bytes", "path"}` as a Parquet image column stores it;
- conversation: `conversations` as LLaVA turns (`from`/`value`), `messages` as chat messages
  (`role`/`content`), or the generated text itself in `conversations`, `text`, `output` or `response`,
  split into turns by `chat_formats.parse_labelled_dialogue`; a description is plain text, and gets the
  human turn `DESCRIBE_PROMPT` (the card's description prompt, first sentence);
- task: a `task`, `type`, `task_type` or `category` column; its three Chinese labels map to `conversation`,
  `complex_reasoning` and `detail_description`, any other label is kept as written. Without one, the task
  is inferred: `用户` labels or more than one round mean `conversation`, `问题` labels `complex_reasoning`,
  unlabelled text or a first question that asks to describe the picture `detail_description`, any other
  single round `complex_reasoning`.

Every image is in one group, `zh600k`; `language` is `zh`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llava_mixes import schema
from llava_mixes.errors import MissingDataError, RecordRejected
from llava_mixes.sources import fetch as hub
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.chat_formats import label_pair, messages_to_turns, parse_labelled_dialogue
from llava_mixes.sources.conversation import first_human_text, normalise_turns
from llava_mixes.sources.llava_format import source_id_of

RELEASE_DIR = "llava-instruct-zh-600k"
REPO_ID = "opencsg/llava-instruct-zh-600k"
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
ANNOTATION_SUFFIXES = (".jsonl", ".json")
METADATA_FILES = frozenset({"dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"})
TASK_LABELS = {"日常对话": "conversation", "复杂推理": "complex_reasoning", "描述图片": "detail_description"}
TASK_KEYS = ("task", "type", "task_type", "category")
TEXT_KEYS = ("conversations", "text", "output", "response")
DESCRIBE_PROMPT = "详细描述这张照片的场景。"
DESCRIPTION_OPENINGS = ("详细描述", "描述", "请描述", "请详细描述")


def _is_data_file(relative: str) -> bool:
    parts = relative.split("/")
    name = parts[-1]
    hidden = any(part.startswith(".") for part in parts)
    return not hidden and name.lower().endswith(DATA_SUFFIXES) and name not in METADATA_FILES


def _task_label(record: Mapping[str, Any]) -> str | None:
    for key in TASK_KEYS:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return TASK_LABELS.get(value.strip(), value.strip())
    return None


def _image(record: Mapping[str, Any]) -> tuple[str | None, bytes | None]:
    """The record's image as `(path, bytes)`: a path to look up, or bytes with the name they were stored under."""
    value = record.get("image")
    if value is None and record.get("images") is not None:
        images = record["images"]
        if not isinstance(images, list) or len(images) > 1:
            count = len(images) if isinstance(images, list) else type(images).__name__
            raise RecordRejected(schema.MALFORMED_RECORD, f"images is {count}; each row of this set has one image")
        value = images[0] if images else None
    if value is None:
        return None, None
    if isinstance(value, (bytes, bytearray)) and value:
        return None, bytes(value)
    if isinstance(value, str) and value.strip():
        return value, None
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        name = path if isinstance(path, str) and path.strip() else None
        if isinstance(data, (bytes, bytearray)) and data:
            return name, bytes(data)
        if name is not None:
            return name, None
    raise RecordRejected(schema.MALFORMED_RECORD, f"image is {value!r:.80}; expected a path, bytes or {{bytes, path}}")


def _from_text(text: str, task: str | None) -> tuple[list[dict[str, str]], str]:
    """Turns and task of a row whose conversation is the generated text itself."""
    pair = label_pair(text)
    if task == "detail_description" or (task is None and pair is None):
        return [{"from": schema.HUMAN, "value": DESCRIBE_PROMPT}, {"from": schema.GPT, "value": text.strip()}], (
            "detail_description"
        )
    turns = parse_labelled_dialogue(text)
    return turns, task or ("conversation" if pair == ("用户", "助手") else "complex_reasoning")


def _raw_turns(record: Mapping[str, Any], task: str | None) -> tuple[list[Any], str | None]:
    """The record's turns as `{from, value}` objects, and its task when the text's labels tell it."""
    conversations = record.get("conversations")
    if isinstance(conversations, list):
        return conversations, task
    if record.get("messages") is not None:
        return messages_to_turns(record["messages"]), task
    for key in TEXT_KEYS:
        text = record.get(key)
        if isinstance(text, str):
            return _from_text(text, task)
    raise RecordRejected(
        schema.MALFORMED_RECORD, f"no conversations, messages or generated text; keys are {sorted(record)}"
    )


def _inferred_task(turns: list[dict[str, str]]) -> str:
    if len(turns) > 2:
        return "conversation"
    if first_human_text(turns).strip().startswith(DESCRIPTION_OPENINGS):
        return "detail_description"
    return "complex_reasoning"


class Zh600k(Source):
    name = "llava_instruct_zh_600k"
    config_name = "zh600k"
    annotation_files = ()
    hub_repo = REPO_ID
    language = "zh"
    image_prefixes = (RELEASE_DIR, "")
    single_image_group = "zh600k"
    batch_rows = 256
    description = "llava-instruct-zh-600k: 642K Chinese conversations, reasoning and descriptions, one image each."
    homepage = f"https://huggingface.co/datasets/{REPO_ID}"
    license = "not stated on the card read; see the Hub page (OpenCSG community licence on opencsg's other sets)"
    citation = (
        "@misc{opencsg2025llavainstructzh, title={llava-instruct-zh-600k}, author={{OpenCSG}}, year={2025}, "
        "howpublished={https://huggingface.co/datasets/opencsg/llava-instruct-zh-600k}}"
    )
    download_hint = (
        f"Download the release with `hf download {REPO_ID} --repo-type dataset --local-dir "
        f"<data_dir>/{RELEASE_DIR}` (or from ModelScope into that folder), images included."
    )

    def locate_files(self, data_dir: Path, in_recipe: bool = False) -> list[Path]:
        """The release's data files under `data_dir/llava-instruct-zh-600k`; else its JSON annotation files
        from the Hub. A release that keeps its data in Parquet (images inside) is never fetched implicitly; its
        errors suggest no similarly named file, so `in_recipe` changes nothing."""
        release = data_dir / RELEASE_DIR
        if release.is_dir():
            found = sorted(path for path in release.rglob("*") if path.is_file())
            local = [path for path in found if _is_data_file(path.relative_to(release).as_posix())]
            if local:
                return local
        try:
            names = sorted(name for name in hub.repo_files(REPO_ID) if _is_data_file(name))
        except MissingDataError as error:
            raise MissingDataError(
                f"{self.name}: no data files in {release} ({error}). {self.download_hint}"
            ) from None
        annotations = [name for name in names if name.lower().endswith(ANNOTATION_SUFFIXES)]
        if not annotations:
            kinds = ", ".join(sorted({Path(name).suffix or name for name in names})) or "no data files"
            raise MissingDataError(
                f"{self.name}: no data files in {release}, and the Hub release holds {len(names)} data files "
                f"({kinds}) that keep the images inside, never downloaded implicitly. {self.download_hint}"
            )
        try:
            return [hub.fetch_annotation(REPO_ID, name) for name in annotations]
        except MissingDataError as error:
            raise MissingDataError(
                f"{self.name}: no data files in {release} ({error}). {self.download_hint}"
            ) from None

    def raw_image_path(self, record: Any) -> str | None:
        try:
            return _image(record)[0] if isinstance(record, Mapping) else None
        except RecordRejected:
            return None

    def normalise(self, record: Any) -> SourceRow:
        if not isinstance(record, Mapping):
            raise RecordRejected(schema.MALFORMED_RECORD, f"record is {type(record).__name__}, not an object")
        image_path, image_bytes = _image(record)
        raw_turns, task = _raw_turns(record, _task_label(record))
        has_image = image_path is not None or image_bytes is not None
        turns = normalise_turns(raw_turns, has_image=has_image)
        return SourceRow(
            source_id_of(dict(record)),
            turns,
            image_path,
            task or _inferred_task(turns),
            image_bytes=image_bytes,
        )
