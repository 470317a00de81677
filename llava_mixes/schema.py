"""The common conversation schema: column names, feature types and the vocabularies every builder shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import pyarrow as pa

IMAGE_TOKEN = "<image>"
HUMAN = "human"
GPT = "gpt"

# Column names: every other module refers to these constants, never to string literals.
ID = "id"
SOURCE_ID = "source_id"
SOURCE = "source"
IMAGE_GROUP = "image_group"
IMAGE_PATH = "image_path"
IMAGE = "image"
IMAGE_SHA256 = "image_sha256"
CONVERSATIONS = "conversations"
LANGUAGE = "language"
TASK = "task"
EMBEDDING = "embedding"
DUPLICATE_OF = "duplicate_of"
SIMILARITY = "similarity"

TURN_FEATURE = {"from": datasets.Value("string"), "value": datasets.Value("string")}

ROW_FEATURES = datasets.Features(
    {
        ID: datasets.Value("string"),
        SOURCE_ID: datasets.Value("string"),
        SOURCE: datasets.Value("string"),
        IMAGE_GROUP: datasets.Value("string"),
        IMAGE_PATH: datasets.Value("string"),
        IMAGE: datasets.Image(),
        IMAGE_SHA256: datasets.Value("string"),
        CONVERSATIONS: datasets.List(TURN_FEATURE),
        LANGUAGE: datasets.Value("string"),
        TASK: datasets.Value("string"),
    }
)

# Columns only some sources fill (null in the rows of the others): textOCR-GPT-4v's other caption fields.
CAPTION_IMAGE = "caption_image"
CAPTION_TEXT = "caption_text"
CAPTION_CONDENSED = "caption_condensed"
TEXTOCR_CAPTION_FEATURES = {
    CAPTION_IMAGE: datasets.Value("string"),
    CAPTION_TEXT: datasets.Value("string"),
    CAPTION_CONDENSED: datasets.Value("string"),
}

DEDUP_FEATURES = {
    DUPLICATE_OF: datasets.Value("string"),
    SIMILARITY: datasets.Value("float32"),
}

TRAIN_SPLIT = "train"
REMOVED_SPLIT = "removed"

# Reasons a record is rejected. Each one is reported with its count and the rows it hit.
MALFORMED_RECORD = "malformed_record"
BAD_ROLE = "bad_role"
EMPTY_CONVERSATION = "empty_conversation"
EMPTY_TURN = "empty_turn"
TURNS_NOT_ALTERNATING = "turns_not_alternating"
UNEXPECTED_TURN_COUNT = "unexpected_turn_count"
UNPARSEABLE_CONVERSATION = "unparseable_conversation"
LAST_TURN_NOT_GPT = "last_turn_not_gpt"
MULTIPLE_IMAGE_TOKENS = "multiple_image_tokens"
IMAGE_TOKEN_MISPLACED = "image_token_misplaced"
IMAGE_TOKEN_IN_TEXT_ONLY_ROW = "image_token_in_text_only_row"
PATH_ESCAPES_DATA_DIR = "path_escapes_data_dir"
MISSING_IMAGE = "missing_image"
UNDECODABLE_IMAGE = "undecodable_image"
EMBEDDING_FAILED = "embedding_failed"
# The image file exists but reading it failed (permission, I/O error); never cached, looked at again next build.
UNREADABLE_IMAGE = "unreadable_image"
# A string of the row holds a lone UTF-16 surrogate (e.g. a JSON `"\ud800"` escape): not storable as UTF-8.
INVALID_TEXT = "invalid_text"
# The row holds several pictures (an `images` list of more than one); the schema has one picture per row.
MULTIPLE_IMAGES = "multiple_images"

BAD_RECORD_POLICIES = ("skip", "error")
"""`on_bad_records`: `skip` rejects a bad row and lists it in the build report; `error` stops the build there."""

REJECT_REASONS = (
    MALFORMED_RECORD,
    BAD_ROLE,
    EMPTY_CONVERSATION,
    EMPTY_TURN,
    TURNS_NOT_ALTERNATING,
    UNEXPECTED_TURN_COUNT,
    UNPARSEABLE_CONVERSATION,
    LAST_TURN_NOT_GPT,
    MULTIPLE_IMAGE_TOKENS,
    IMAGE_TOKEN_MISPLACED,
    IMAGE_TOKEN_IN_TEXT_ONLY_ROW,
    PATH_ESCAPES_DATA_DIR,
    MISSING_IMAGE,
    UNDECODABLE_IMAGE,
    EMBEDDING_FAILED,
    UNREADABLE_IMAGE,
    INVALID_TEXT,
    MULTIPLE_IMAGES,
)


TEXT_ONLY_GROUP = "(text only)"
"""The statistics line of rows without an image."""
NO_GROUP = "(no image group)"
"""The statistics line of images without an `image_group`."""


@dataclass(frozen=True)
class Rejection:
    """One rejected input row and why."""

    source: str
    row_index: int
    source_id: str | None
    image_group: str | None
    image_path: str | None
    reason: str
    detail: str


def embedding_feature(dim: int) -> datasets.List:
    """The `embedding` column type: a fixed-length float32 vector."""
    return datasets.List(datasets.Value("float32"), length=dim)


def row_features(extra: dict[str, datasets.Value] | None = None) -> datasets.Features:
    """The row schema, followed by the source-specific columns of a config's sources (see `Source.extra_features`)."""
    return datasets.Features({**ROW_FEATURES, **(extra or {})})


def output_features(
    dedup: bool, embedding_dim: int | None = None, extra: dict[str, datasets.Value] | None = None
) -> datasets.Features:
    """Features of a built config: the row schema and its extra columns, plus dedup columns and embeddings."""
    features = row_features(extra)
    if embedding_dim is not None:
        features[EMBEDDING] = embedding_feature(embedding_dim)
    if dedup:
        features.update(DEDUP_FEATURES)
    return features


ROW_ARROW_SCHEMA: pa.Schema = ROW_FEATURES.arrow_schema


def conform(rows: datasets.Dataset, features: datasets.Features) -> datasets.Dataset:
    """`rows` with every column of `features` (absent ones null), in their order and types."""
    for name in features:
        if name not in rows.column_names:
            rows = rows.add_column(name, [None] * len(rows))
    rows = rows.select_columns(list(features))
    return rows if rows.features == features else rows.cast(features)


def select_rows(rows: datasets.Dataset, positions: Sequence[int]) -> datasets.Dataset:
    """`rows.select(positions)`, to which columns can be added: with no positions, an empty dataset of the same
    features, since `datasets` cannot add a column to an empty selection of concatenated tables ("Failed to
    concatenate on axis=1")."""
    if len(positions) == 0:
        return datasets.Dataset.from_dict({name: [] for name in rows.features}, features=rows.features)
    return rows.select(positions)
