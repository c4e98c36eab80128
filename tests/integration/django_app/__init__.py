"""A small Django project for the integration tests of ``taskstore.contrib.django`` (see test_django.py)."""
