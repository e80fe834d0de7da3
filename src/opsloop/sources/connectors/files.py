"""CSV, Parquet and JSON-lines files from local paths and globs, read straight into Arrow.

The cursor is each file's size and modification time: a run loads the files that are new or changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import SourceRequestError
from ..config import FilesSource, FileStream
from .base import Page, PullContext, Stream

if TYPE_CHECKING:
    import pyarrow as pa

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "jsonl"}


def _keys(value: list[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class FilesConnector:
    def __init__(self, config: FilesSource, ctx: PullContext) -> None:
        self.config = config
        self.ctx = ctx

    def streams(self) -> list[Stream]:
        out = []
        for s in self.config.streams:
            keys = _keys(s.primary_key)
            out.append(Stream(s.name, keys, s.write_disposition or ("merge" if keys else "append"),
                              options={"config": s}))
        return out

    def _files(self, spec: FileStream) -> list[Path]:
        pattern = spec.path
        if Path(pattern).is_absolute():
            anchor = Path(Path(pattern).anchor)
            return sorted(p for p in anchor.glob(pattern[len(anchor.as_posix()):]) if p.is_file())
        return sorted(p for p in self.ctx.project_root.glob(pattern) if p.is_file())

    def read(self, stream: Stream, cursor: object) -> Iterator[Page]:
        spec = stream.options["config"]
        if not isinstance(spec, FileStream):
            raise TypeError(f"stream {stream.name!r} has no file spec")
        seen: dict[str, object] = dict(cursor) if isinstance(cursor, dict) else {}
        for path in self._files(spec):
            stat = path.stat()
            key = str(path)
            stamp = [stat.st_mtime, float(stat.st_size)]
            if seen.get(key) == stamp:
                continue
            table = self._read(path, spec)
            seen[key] = stamp
            yield Page(table, cursor=dict(seen))

    def _read(self, path: Path, spec: FileStream) -> pa.Table:
        fmt = spec.format or _FORMATS.get(path.suffix.lower())
        try:
            if fmt == "csv":
                return _read_csv(path)
            if fmt == "parquet":
                import pyarrow.parquet as pq

                return pq.read_table(path)
            if fmt == "jsonl":
                import pyarrow.json as pjson

                return pjson.read_json(path)
        except Exception as exc:
            raise SourceRequestError(f"source {self.ctx.source!r}: cannot read {path}: {exc}") from exc
        raise SourceRequestError(
            f"source {self.ctx.source!r}: cannot tell the format of {path}; set format: csv, parquet or jsonl"
        )

    def close(self) -> None:
        pass


def build(config: FilesSource, ctx: PullContext) -> FilesConnector:
    return FilesConnector(config, ctx)


KEEP_AS_TEXT = r"^\s*(\+|0\d)"
"""A CSV column with a value like ``+15550100`` or ``0042`` stays text: a phone number, a ZIP code or an id
with leading zeros read as a number would lose its ``+`` and zeros, and a later value would not match it."""


def _read_csv(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    inferred = pcsv.read_csv(path)
    numeric = [f.name for f in inferred.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    if not numeric:
        return inferred
    as_text = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
        column_types={name: pa.string() for name in numeric}, include_columns=numeric))
    keep = [name for name in numeric
            if pc.any(pc.match_substring_regex(as_text.column(name), KEEP_AS_TEXT)).as_py()]
    for name in keep:
        inferred = inferred.set_column(inferred.schema.get_field_index(name), name, as_text.column(name))
    return inferred
