"""The project's error hierarchy, defined once. Each error carries a stable code; the CLI turns
them into a message and a non-zero exit, the API (later) into a 4xx JSON body."""

from __future__ import annotations


class RecommndrError(Exception):
    """Base class of every error the project raises on purpose."""

    code = "error"
    http_status = 500
    exit_code = 1


class UserInputError(RecommndrError):
    """The caller gave something we cannot use (a bad file, a bad option)."""

    code = "invalid_input"
    http_status = 422
    exit_code = 2


class DataSchemaError(UserInputError):
    """A table does not follow the schema: a missing column, a wrong type, an unparseable value."""

    code = "schema_error"


class DataNotFoundError(UserInputError):
    """A dataset folder or table is missing."""

    code = "not_found"
    http_status = 404
