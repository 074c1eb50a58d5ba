"""The ``distillguard`` command: one module per subcommand, assembled in :mod:`.main`."""

__all__: list[str] = []
