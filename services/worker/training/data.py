"""A fine-tune job's data set: read, checked, split and tokenized, before any model loads.

Rows come inline (``{"rows": [{...}, ...]}``, at most ``PIPEQ_FINETUNE_MAX_INLINE_ROWS``)
or from a file under the data folder (``{"file": "reviews.csv"}``: CSV, JSON lines or
Parquet, read by ``datasets``; at most ``PIPEQ_FINETUNE_MAX_ROWS``). Each objective reads
its columns through the job's ``columns`` mapping (role -> column): a missing
column, a row of the wrong type or a data set past its cap fails the job here.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import InvalidInput, InvalidParameter
from shared.params.finetune import ROLES, FineTuneParams
from shared.settings import Settings

#: File suffix -> the ``datasets`` builder that reads it.
FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass
class DataSet:
    """Rows split for training and evaluation, with the label names if the objective has any."""

    train: Any  # datasets.Dataset
    eval: Any | None
    labels: list[str] = field(default_factory=list)


def read_rows(inputs: Any, *, settings: Settings) -> Any:
    """The job's rows as a ``datasets.Dataset``."""
    import datasets

    if not isinstance(inputs, dict) or len(inputs) != 1 or not {"file", "rows"} & set(inputs):
        raise InvalidInput(
            'inputs: a data set is {"file": PATH} (CSV, JSON lines or Parquet under the data '
            'folder) or {"rows": [{column: value, ...}, ...]}'
        )
    if "rows" in inputs:
        rows = inputs["rows"]
        cap = settings.finetune_max_inline_rows
        if not isinstance(rows, list) or not rows:
            raise InvalidInput("inputs.rows: expected a non-empty list of objects")
        if len(rows) > cap:
            raise InvalidInput(
                f"inputs.rows: {len(rows)} rows inline; the cap is {cap} "
                "(put larger data sets in a file under the data folder)"
            )
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise InvalidInput(f"inputs.rows[{index}]: expected an object of columns")
        try:
            return datasets.Dataset.from_list(rows)
        except (ValueError, TypeError) as exc:  # pyarrow: columns of mixed types
            raise InvalidInput(f"inputs.rows: columns do not line up: {exc}") from None
    path = data_file(inputs["file"], root=settings.resolved_data_dir)
    with tempfile.TemporaryDirectory(prefix="pipeq-data-") as cache:
        try:
            loaded = datasets.load_dataset(
                FORMATS[path.suffix.lower()],
                data_files=str(path),
                split="train",
                cache_dir=cache,
                keep_in_memory=True,
            )
        except Exception as exc:  # datasets raises many kinds; all mean "unreadable"
            raise InvalidInput(f"inputs.file: cannot read {inputs['file']}: {exc}") from None
    if loaded.num_rows > settings.finetune_max_rows:
        raise InvalidInput(
            f"inputs.file: {loaded.num_rows} rows; the cap is {settings.finetune_max_rows}"
        )
    return loaded


def data_file(name: Any, *, root: Path) -> Path:
    """``name`` as a file inside the data folder ``root``; nothing outside it is read."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("inputs.file: expected a path relative to the data folder")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise InvalidInput(f"inputs.file: {name!r} must be relative to the data folder, no '..'")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InvalidInput(f"inputs.file: {name!r} leads outside the data folder")
    if path.suffix.lower() not in FORMATS:
        raise InvalidInput(f"inputs.file: {name!r}: pipeq reads .csv, .jsonl, .json, .parquet")
    if not path.is_file():
        raise InvalidInput(f"inputs.file: {name!r} is not a file in the data folder")
    return path


def check_columns(rows: Any, params: FineTuneParams) -> None:
    """Every role's column is present, and its values have the type the objective reads."""
    assert params.objective is not None
    for role in ROLES[params.objective]:
        column = params.column(role)
        if column not in rows.column_names:
            raise InvalidParameter(
                "columns",
                f"column {column!r} (role {role}) is not in the data set; it has: "
                f"{', '.join(rows.column_names)}",
            )
        for index, value in enumerate(rows[column]):
            problem = _value_problem(role, value)
            if problem:
                raise InvalidInput(f"row {index}, column {column!r}: {problem}")


def _value_problem(role: str, value: Any) -> str | None:
    if value is None:
        return "empty"
    if role in ("text", "source", "target"):
        return None if isinstance(value, str) and value.strip() else "expected a non-empty text"
    if role == "label":
        return (
            None
            if isinstance(value, str | int) and not isinstance(value, bool)
            else ("expected a label (a text or an integer)")
        )
    if role in ("tokens", "tags"):
        return None if isinstance(value, list) and value else "expected a non-empty list"
    return None


def split(rows: Any, params: FineTuneParams) -> tuple[Any, Any | None]:
    """(train, eval): ``eval_fraction`` of the rows held out, shuffled with the job's seed."""
    held = round(rows.num_rows * params.eval_fraction)
    if held == 0:
        return rows, None
    if held >= rows.num_rows:
        raise InvalidParameter(
            "eval_fraction", f"leaves no rows to train on ({rows.num_rows} rows in all)"
        )
    parts = rows.train_test_split(test_size=held, seed=params.seed)
    return parts["train"], parts["test"]


def label_names(rows: Any, params: FineTuneParams) -> list[str]:
    """The sorted label names of a classification objective (empty for the others)."""
    if params.objective == "sequence-classification":
        values = set(rows[params.column("label")])
    elif params.objective == "token-classification":
        values = {tag for tags in rows[params.column("tags")] for tag in tags}
    else:
        return []
    names = sorted({str(value) for value in values})
    if len(names) < 2:
        raise InvalidInput(f"the data set has {len(names)} label(s); classification needs 2")
    return names


def prepare(inputs: Any, params: FineTuneParams, *, settings: Settings) -> DataSet:
    import datasets

    datasets.disable_progress_bars()  # a worker's log is no terminal
    rows = read_rows(inputs, settings=settings)
    check_columns(rows, params)
    labels = label_names(rows, params)
    train, held = split(rows, params)
    return DataSet(train, held, labels)


def tokenize(data: DataSet, tokenizer: Any, params: FineTuneParams) -> DataSet:
    """Both splits turned into model inputs for the job's objective."""
    ids = {name: index for index, name in enumerate(data.labels)}
    objective, limit = params.objective, params.max_length

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        if objective == "sequence-classification":
            out = tokenizer(batch[params.column("text")], truncation=True, max_length=limit)
            out["labels"] = [ids[str(value)] for value in batch[params.column("label")]]
        elif objective == "token-classification":
            out = tokenizer(
                batch[params.column("tokens")],
                is_split_into_words=True,
                truncation=True,
                max_length=limit,
            )
            out["labels"] = [
                _aligned(out.word_ids(index), [ids[str(tag)] for tag in tags])
                for index, tags in enumerate(batch[params.column("tags")])
            ]
        elif objective == "causal-lm":
            out = tokenizer(batch[params.column("text")], truncation=True, max_length=limit)
        else:
            out = tokenizer(
                batch[params.column("source")],
                text_target=batch[params.column("target")],
                truncation=True,
                max_length=limit,
            )
        return dict(out)

    def apply(rows: Any) -> Any:
        return rows.map(encode, batched=True, remove_columns=rows.column_names)

    return DataSet(apply(data.train), apply(data.eval) if data.eval else None, data.labels)


def _aligned(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """A word's tag on its first sub-token; -100 (ignored by the loss) elsewhere."""
    labels, previous = [], None
    for word in word_ids:
        if word is None or word == previous or word >= len(tags):
            labels.append(-100)
        else:
            labels.append(tags[word])
        previous = word
    return labels
