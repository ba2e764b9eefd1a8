class IngestError(Exception):
    """Bad input for an import: the message says what was wrong and what to do."""
