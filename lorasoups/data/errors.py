"""The one exception the data registry raises, so callers can catch data problems specifically."""
from __future__ import annotations


class DataError(ValueError):
    """Data that cannot be used; the message names the dataset or file, the line and the field."""
