"""Built-in target tasks: one module per task adapter, each with its phantom."""
