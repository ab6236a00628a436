"""Errors a job reports to its user, each with the exit code the CLI returns for it."""

from __future__ import annotations


class JobError(Exception):
    """A job that cannot run or did not succeed; the message says what to do."""

    exit_code = 1


class ModelNotFoundError(JobError):
    """The model is neither under the models root nor downloadable."""

    exit_code = 3


class ModelNotUsableError(JobError):
    """The model is there, but cannot embed images as asked (not a vision model, or a pooling
    it does not have)."""

    exit_code = 3


class InputNotFoundError(JobError):
    """The input location holds nothing to read."""

    exit_code = 3


class OutputExistsError(JobError):
    """``output.mode: error`` and the output location already holds data."""

    exit_code = 3


class ConfigUnavailableError(JobError):
    """The job's config could not be read from its own EmbeddingJob (``--from-embeddingjob``)."""

    exit_code = 3


class TooManyFailuresError(JobError):
    """More rows failed than ``errors.maxFailedFraction`` allows."""

    exit_code = 4


class RowError(Exception):
    """One row's image could not be turned into pixels; the message becomes its error string."""
