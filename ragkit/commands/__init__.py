"""CLI plug-ins: every module here defines ``register(app)`` and adds its own commands."""
