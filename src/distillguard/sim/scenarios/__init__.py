"""Package data: the shipped scenario files (TOML)."""

__all__: list[str] = []
