"""Backup, restore, and moving a queue between engines: records.py is the format, files.py the
backup files, moves.py what the API and the CLI call. Each engine implements
``Backend.export_snapshot`` and ``Backend.import_snapshot``."""
