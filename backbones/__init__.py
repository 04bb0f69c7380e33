"""Built-in backbones: one module per network family, each registering itself."""
