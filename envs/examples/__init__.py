"""Example tool classes and task files for the Python-tools adapter (``py:<name>`` sources)."""
