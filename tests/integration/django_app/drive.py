"""``python -m tests.integration.django_app.drive 'REQUESTS'``: POST each request (a JSON list of form dicts)
to ``/orders/`` with Django's test client, and print one JSON list of ``{"status", "body"}``."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integration.django_app.settings")
    import django

    django.setup()
    from django.test import Client

    client = Client(raise_request_exception=False)
    out = []
    for form in json.loads(sys.argv[1]):
        response = client.post("/orders/", form)
        body = response.json() if response.status_code == 200 else None
        out.append({"status": response.status_code, "body": body})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
