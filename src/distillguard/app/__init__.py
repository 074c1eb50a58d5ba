"""The application layer: wires the components (store, ledger, privacy, scorer, limiter, upstream,
gateway, console, admin) once and offers the services that span them.

Nothing below this package imports it; the CLI and the server entry points sit above it.
"""
