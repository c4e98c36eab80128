"""The ``Store`` facade, split by concern; ``taskstore.store.Store`` puts the parts together."""
