"""The impression log: its schema, reading, validation, chat format, feedback kinds, bundled datasets, splits and row access."""
