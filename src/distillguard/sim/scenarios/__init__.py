"""Package data: the shipped scenario files (TOML)."""
