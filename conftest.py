"""This repository's own test wiring (the plugin itself needs no conftest: it is a pytest11 entry point)."""
pytest_plugins = ["pytester"]

# tests/_targets/ holds files that tests run in a child pytest on purpose; never collect them here.
collect_ignore = ["tests/_targets"]
