"""The project's error hierarchy, defined once. Each error carries a stable code; the CLI turns
them into a message and a non-zero exit, the API (``serving/handlers.py``, its one handler)
into a JSON body with the class's status."""

from __future__ import annotations


class RecommndrError(Exception):
    """Base class of every error the project raises on purpose."""

    code = "error"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        """``code`` refines the class's stable code for one case (``too_many_events``, say)."""
        super().__init__(message)
        if code is not None:
            self.code = code


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


class ArtifactError(RecommndrError):
    """Artifacts are missing, incomplete or do not match their manifest."""

    code = "artifact_error"
    exit_code = 2


class NotFoundError(RecommndrError):
    """The caller asked for something that does not exist (an unknown product, say)."""

    code = "not_found"
    http_status = 404


class InvalidRequestError(UserInputError):
    """A request the API cannot serve as asked (beyond what its schema already refuses)."""

    code = "invalid_request"


class ConflictError(RecommndrError):
    """The request cannot be applied in the current state (traffic for a missing challenger)."""

    code = "conflict"
    http_status = 409


class PayloadTooLargeError(RecommndrError):
    """A request body over the stated limit."""

    code = "payload_too_large"
    http_status = 413


class ServiceUnavailableError(RecommndrError):
    """Not able to serve now, retry later (models loading, the event log not writable)."""

    code = "unavailable"
    http_status = 503


class EventLogUnwritableError(ServiceUnavailableError):
    """The event log folder cannot be written: the API must not start, as a 202 could not be kept."""

    code = "event_log_unwritable"
