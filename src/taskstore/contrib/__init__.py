"""Integrations with other frameworks, each an optional extra: ``taskstore.contrib.django``."""
