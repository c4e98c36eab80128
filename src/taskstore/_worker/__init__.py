"""The ``Worker``, split by role; ``taskstore.worker.Worker`` puts the roles together."""
