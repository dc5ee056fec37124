"""The one exception type users see: a one-line message naming file, record and field."""

from __future__ import annotations


class ObliviateError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line, no traceback."""


class DataError(ObliviateError):
    """Malformed input data. Built with the location so the message always says where."""

    def __init__(self, path: object, message: str, *, record: object | None = None, field: str | None = None):
        where = str(path)
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.record, self.field = path, record, field
