"""A small real FastAPI + SQLAlchemy 2 app that enqueues in its requests' transactions (the README's recipe).

``models`` holds its tables, ``tasks`` the taskstore App and the handler a worker runs
(``taskstore worker tests.integration.fastapi_app.tasks:app``), ``main`` the FastAPI app: sync endpoints on a
``Session``, async ones on an ``AsyncSession``, both enqueuing with ``.options(conn=session)``.
"""
