"""Built-in synthetic datasets, written in the real datasets' on-disk layouts."""
