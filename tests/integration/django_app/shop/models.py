from __future__ import annotations

from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    processed = models.IntegerField(default=0)  # how many times a task processed it
    backend_pid = models.IntegerField(null=True)  # the worker's database session that did (PostgreSQL)
