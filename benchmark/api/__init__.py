"""What a plugin sees: the method and task contracts, the registries, the profiles.

A method plugin subclasses ``method.Method``, a task plugin ``task.Task``; both register in
``registry`` (in code for the built-ins, through entry points for third parties). A
``profiles.Profile`` is the budget a run is trained with. This layer imports the data and
model layers only.
"""
