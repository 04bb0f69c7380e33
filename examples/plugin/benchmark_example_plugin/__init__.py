"""An example out-of-tree method plugin for genesis-benchmark (see ``rotation``)."""
