"""Package data: a compact copy of the AlpacaEval instructions (see NOTICE)."""

__all__: list[str] = []
